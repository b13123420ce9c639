"""DINOv2 (Oquab et al. 2024): iBOT with KoLeo, Sinkhorn-Knopp centering and separate heads.

facebookresearch/dinov2 ``dinov2/train/ssl_meta_arch.py`` ``SSLMetaArch.forward_backward`` on
jaxssl's multi-crop views and EMA teacher (:mod:`jaxssl.methods.ibot`):

* teacher: EMA of the student (``teacher.momentum`` 0.992 -> 1 on a cosine, per iteration);
  it sees the 2 global crops unmasked; its [CLS] outputs ``t`` and its masked-patch outputs
  ``t2`` become targets by ``dinov2.centering``: 'sinkhorn_knopp' (the paper;
  :func:`jaxssl.losses.sinkhorn_knopp` over the global batch, 3 iterations) or 'centering'
  (DINO's running centers ``center``, ``patch_center``; ``ssl_default_config.yaml``);
* student: [CLS] of every crop through the DINO head, the masked global crops' masked patch
  tokens through the iBOT head (``ibot.shared_head=False``: a second head, ``patch_head``);
* loss (``dino.loss_weight``, ``ibot.loss_weight`` 1, ``koleo_loss_weight`` 0.1):

      L_dino  = DINO's cross-entropy over (teacher global t, student crop s != t) pairs
      L_koleo = sum over the 2 global crops of KoLeo(student backbone [CLS])
      L_ibot  = 1/(2B) sum_i 1/|M_i| sum_{p in M_i} H(t2_ip, log_softmax(s2_ip / tau_s))

  the masked patches gathered into a static buffer of :func:`blockwise_mask_budget` rows
  (dinov2's ``upperbound``), so the patch heads never see unmasked tokens;
* teacher temperature: linear per iteration from ``warmup_teacher_temp`` 0.04 to
  ``teacher_temp`` 0.07 over ``warmup_teacher_temp_epochs`` 30 (``CosineScheduler`` with
  warm-up and equal base and final values), [CLS] and patches alike;
* optimizer extras: layer-wise LR decay 0.9 and patch-embedding LR x 0.2
  (``get_params_groups_with_decay``) through ``lr_scales``; last layers frozen 1 epoch.

KoLeo is applied per group of ``dinov2.koleo_group_size`` rows of each crop (DINOv2: per GPU,
64 rows; 0 = the whole global batch), the loss the mean over groups (DDP's average).

Named deviations: DINOv2's ``iBOTPatchLoss`` centering updates ``patch_center`` with the mean
of each GPU's masked-patch means; here the mean over every masked patch of the global batch.
Stochastic depth (``drop_path_rate`` 0.3, uniform) is not applied (as jaxssl's DINO).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxssl import losses
from jaxssl.augment import patch_masking
from jaxssl.methods.ibot import IBOT, ibot_config

CENTERINGS = ("sinkhorn_knopp", "centering")


def dinov2_config() -> ml_collections.ConfigDict:
    """``ibot_config()`` re-based on dinov2 ``ssl_default_config.yaml`` + ``config.dinov2``."""
    c = ibot_config()
    c.method = "dinov2"
    c.dinov2 = ml_collections.ConfigDict(dict(
        centering="sinkhorn_knopp", sinkhorn_iters=3,
        dino_loss_weight=1.0, koleo_loss_weight=0.1, koleo_group_size=0,
        layerwise_decay=0.9, patch_embed_lr_mult=0.2,
        clip_grad_per_module=0.0))   # > 0: clip_grad_norm_ of backbone / each head (DINOv2 3.0)
    c.dino.update(dict(out_dim=65536, head_hidden_dim=2048, head_bottleneck_dim=256,
                       head_num_layers=3, norm_last_layer=True, teacher_temp=0.07,
                       warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=30,
                       local_crops_number=8, local_crop_size=96, local_crop_scale=(0.05, 0.32)))
    c.ibot.update(dict(shared_head=False, patch_out_dim=65536, mask_prob=0.5,
                       mask_ratio=(0.1, 0.5), mask_min_num_patches=4, mask_max_block_share=0.5,
                       teacher_patch_temp=0.07, warmup_teacher_patch_temp=0.04))
    c.teacher.update(dict(momentum=0.992, momentum_final=1.0, momentum_schedule="cosine"))
    c.augment.crop_scale = (0.32, 1.0)
    c.model.update(dict(backbone="vit_large", patch_size=16, vit_layerscale_init=1e-5))
    return c


def warmup_temperature(step, warmup: float, final: float, warmup_steps: int):
    """dinov2 ``CosineScheduler(base=final, final=final, warmup_iters=W, start_warmup=warmup)``:
    ``linspace(warmup, final, W)[step]`` for ``step < W``, then ``final``."""
    s = jnp.asarray(step, jnp.float32)
    if warmup_steps <= 0:
        return jnp.float32(final)
    frac = s / max(warmup_steps - 1, 1)
    return jnp.where(s < warmup_steps, warmup + (final - warmup) * jnp.minimum(frac, 1.0),
                     jnp.float32(final)).astype(jnp.float32)


def grouped_koleo(x: jax.Array, group_size: int) -> jax.Array:
    """Mean over consecutive groups of ``group_size`` rows of :func:`losses.koleo_loss`
    (DINOv2's per-GPU KoLeo averaged by DDP); ``group_size`` 0: one group."""
    n = x.shape[0]
    if group_size <= 0 or group_size >= n:
        return losses.koleo_loss(x)
    if n % group_size:
        raise ValueError(f"dinov2.koleo_group_size={group_size} must divide the batch {n}")
    return jnp.mean(jax.vmap(losses.koleo_loss)(x.reshape(n // group_size, group_size, -1)))


class DINOv2(IBOT):
    """iBOT + KoLeo + Sinkhorn-Knopp (or centering) with DINOv2's heads and schedules."""

    section = "ibot"

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        if "dinov2" not in config:
            raise ValueError("config.method='dinov2' needs config.dinov2; start from "
                             "jaxssl.methods.dinov2.dinov2_config() (see configs/dinov2_digits.py)")
        super().validate_config(config)
        v = config.dinov2
        if v.centering not in CENTERINGS:
            fail("dinov2.centering", v.centering, f"use one of {list(CENTERINGS)}")
        if v.koleo_loss_weight < 0:
            fail("dinov2.koleo_loss_weight", v.koleo_loss_weight, "use >= 0 (DINOv2: 0.1)")
        if not 0.0 < v.layerwise_decay <= 1.0:
            fail("dinov2.layerwise_decay", v.layerwise_decay, "use a value in (0, 1] (DINOv2: 0.9)")
        g = int(v.koleo_group_size)
        b = int(config.train.batch_size)
        if g < 0 or (g and b % g):
            fail("dinov2.koleo_group_size", g, f"use 0 or a divisor of train.batch_size={b}")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        self.v = config.dinov2
        self.depth = self.net.backbone.depth

    def teacher_temp(self, step):
        d = self.d
        return warmup_temperature(step, float(d.warmup_teacher_temp), float(d.teacher_temp),
                                  int(d.warmup_teacher_temp_epochs) * self.steps_per_epoch)

    def patch_teacher_temp(self, step):
        return self.teacher_temp(step)

    def lr_scales(self):
        """Layer-wise LR decay (``layerwise_decay ** (L + 1 - layer)``, heads 1) times
        ``patch_embed_lr_mult`` on the patch embedding: dinov2 ``param_groups``."""
        from jaxssl import optim
        params, _ = jax.eval_shape(self.init, jax.random.key(0))
        scales = optim.layerwise_lr_scales(params, float(self.v.layerwise_decay), self.depth)
        mult = float(self.v.patch_embed_lr_mult)
        embed = float(self.v.layerwise_decay) ** (self.depth + 1)

        def scale(path, s):
            names = {getattr(k, "key", None) for k in path}
            if "mask_token" in names or "register_tokens" in names:  # dinov2: layer 0 too
                s = embed
            return s * mult if "patch_embed" in names else s

        return jax.tree_util.tree_map_with_path(scale, scales)

    def wrap_optimizer(self, tx, schedule_inputs):
        """DINO's last-layer freeze, after DINOv2's gradient clipping: each top-level module
        (backbone, head, patch_head) clipped to global norm ``clip_grad_per_module``
        (``for v in model.student.values(): v.clip_grad_norm_(clip_grad)``)."""
        tx = super().wrap_optimizer(tx, schedule_inputs)
        max_norm = float(self.v.clip_grad_per_module)
        if max_norm <= 0:
            return tx
        return optax.chain(clip_by_module_norm(max_norm), tx)

    def loss(self, params, model_state, batch, step):
        globals_, locals_ = self.crops(batch, step)
        n2 = globals_.shape[0]
        n = n2 // 2
        mask = self.masks(step, n2)
        s = self.s
        budget = patch_masking.blockwise_mask_budget(n2, self.num_patches, tuple(s.mask_ratio),
                                                     float(s.mask_prob))
        flat = mask.reshape(-1)
        count = jnp.sum(flat, dtype=jnp.int32)
        rows = jnp.nonzero(flat, size=budget, fill_value=0)[0].astype(jnp.int32)
        valid = jnp.arange(budget, dtype=jnp.int32) < count
        per_image = jnp.maximum(jnp.sum(mask, axis=1, dtype=jnp.int32), 1).astype(jnp.float32)
        weights = jnp.where(valid, 1.0 / per_image[rows // self.num_patches], 0.0)

        (s_cls, s_patch, s_gcls), stats, (t_cls, t_patch, _), t_stats = self.forward(
            params, model_state, globals_, locals_, mask, rows)
        k = s_cls.shape[-1]
        s_cls = s_cls.astype(jnp.float32).reshape(-1, n, k)
        temp = self.teacher_temp(step)
        center, patch_center = model_state["center"], model_state["patch_center"]
        new_center, new_patch_center = center, patch_center
        if self.v.centering == "sinkhorn_knopp":
            t_probs = losses.sinkhorn_knopp(t_cls, temp, int(self.v.sinkhorn_iters))
            t_patch_probs = losses.sinkhorn_knopp(t_patch, temp, int(self.v.sinkhorn_iters),
                                                  valid=valid)
        else:
            t_probs = jax.nn.softmax((t_cls - center) / temp, axis=-1)
            t_patch_probs = jax.nn.softmax((t_patch - patch_center) / temp, axis=-1)
            new_center = losses.dino_center_update(center, t_cls[None], float(self.d.center_momentum))
            w = valid.astype(jnp.float32)[:, None]
            batch_mean = jnp.sum(t_patch * w, axis=0, keepdims=True) / jnp.maximum(jnp.sum(w), 1.0)
            m2 = float(s.patch_center_momentum)
            new_patch_center = m2 * patch_center + (1.0 - m2) * batch_mean
        dino = cross_entropy_pairs(s_cls, t_probs.reshape(2, n, k), float(self.d.student_temp))
        ibot = losses.ibot_patch_loss_gathered(s_patch, t_patch_probs, weights, n2,
                                               float(self.d.student_temp))
        koleo = jnp.float32(0.0)
        if float(self.v.koleo_loss_weight) > 0:
            g = s_gcls.astype(jnp.float32).reshape(2, n, -1)
            group = int(self.v.koleo_group_size)
            koleo = grouped_koleo(g[0], group) + grouped_koleo(g[1], group)
        loss = (float(self.v.dino_loss_weight) * dino + float(self.v.koleo_loss_weight) * koleo
                + float(s.patch_loss_weight) * ibot)
        new_state = {"batch_stats": stats,
                     "teacher": {"params": model_state["teacher"]["params"], "batch_stats": t_stats},
                     "center": new_center, "patch_center": new_patch_center}
        entropy = -jnp.mean(jnp.sum(t_probs * jnp.log(t_probs + 1e-12), axis=-1))
        metrics = {"teacher_temp": temp, "momentum": self.teacher.momentum_at(step),
                   "dino_loss": dino, "ibot_loss": ibot, "koleo_loss": koleo,
                   "teacher_entropy": entropy, "masked_patches": count.astype(jnp.float32)}
        return loss, (new_state, metrics)


def clip_by_module_norm(max_norm: float) -> optax.GradientTransformation:
    """Each top-level subtree of the gradient scaled by ``min(1, max_norm / (||g|| + 1e-6))``
    with ``||g||`` its global L2 norm (torch ``clip_grad_norm_`` per module)."""

    def update(updates, state, params=None):
        del params

        def clip(tree):
            norm = optax.global_norm(tree)
            coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
            return jax.tree.map(lambda g: (g * coef).astype(g.dtype), tree)

        return {k: clip(v) for k, v in updates.items()}, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def cross_entropy_pairs(student_logits, teacher_probs, student_temp):
    """DINO's multi-crop cross-entropy with given teacher probabilities (Sinkhorn-Knopp or
    centred softmax): ``[Vs, N, K]`` student logits, ``[Vt, N, K]`` targets; the mean over
    the pairs (t, s != t) of ``1/N sum_n -<p_t, log_softmax(s / tau_s)>`` (dinov2
    ``DINOLoss.forward`` over local and global crops, divided by the number of terms)."""
    v_s, v_t = student_logits.shape[0], teacher_probs.shape[0]
    t = jax.lax.stop_gradient(teacher_probs.astype(jnp.float32))
    logp = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
    ce = -jnp.einsum("tnk,snk->ts", t, logp, precision=jax.lax.Precision.HIGHEST) / t.shape[1]
    not_same = jnp.asarray(1.0 - np.eye(v_t, v_s), jnp.float32)
    return jnp.sum(ce * not_same) / (v_t * v_s - min(v_t, v_s))


__all__ = ["DINOv2", "dinov2_config", "grouped_koleo", "warmup_temperature", "clip_by_module_norm",
           "cross_entropy_pairs", "CENTERINGS"]
