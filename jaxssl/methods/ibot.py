"""iBOT (Zhou et al. 2022): DINO's [CLS] self-distillation plus masked patch self-distillation.

DINO (:mod:`jaxssl.methods.dino`: multi-crop views, EMA teacher, DINO head, centering, teacher
temperature warm-up, last-layer freeze) with one more term. The student sees its 2 global
crops with block masks (:func:`jaxssl.augment.patch_masking.blockwise_masks`): masked patch
tokens are replaced by the ViT's learned ``mask_token`` before positions are added; the
teacher sees the same crops unmasked. With ``h`` the patch head (the [CLS] head when
``ibot.shared_head``) and ``c2`` the running center of the teacher's patch outputs
(``model_state['patch_center']``), bytedance/ibot ``main_ibot.py`` ``iBOTLoss``:

    L_cls   = DINO's loss over (teacher global t, student crop s != t)          (lambda1)
    L_patch = 1/2 sum_{g in globals} 1/n sum_i 1/|M_gi| sum_{p in M_gi}
              H( softmax((h_t(x_g)_ip - c2) / tau_t2), log_softmax(h_s(x~_g)_ip / tau_s) )
    L       = lambda1 L_cls + lambda2 L_patch   (jaxssl.losses.dino_loss, ibot_patch_loss)

and ``c2 <- m2 c2 + (1 - m2) mean_{i, p} h_t(x_g)_ip`` over every teacher patch token. The
patch temperature ``tau_t2`` warms up by epoch like the [CLS] one
(``ibot.warmup_teacher_patch_temp`` -> ``ibot.teacher_patch_temp``).

Evaluation features are DINO's (:meth:`DINO.backbone_features` through ``MultiCrop.features``,
which only reads ``backbone``).

Masks are drawn on device from ``rng.step_key(seed, 'mask', step)``, one per global crop
(all ``2 x batch`` together), so a resumed run replays them bit for bit, as it replays views,
teacher and centers (all in the checkpointed state or keyed by step).

Named deviations from bytedance/ibot: the masks follow DINOv2's ``collate_data_and_cast``
(exactly ``int(2B * prob)`` crops masked, stratified ratios; iBOT draws each crop's ratio
independently, ``{0, U(0.1, 0.5)}`` with ``pred_ratio 0 0.3 --pred_ratio_var 0 0.2``); a
separate patch head (``ibot.shared_head=False``) is a whole second DINO head (DINOv2's
``ibot_head``; iBOT's ``iBOTHead`` shares the MLP and adds a second last layer); the student
ViT has no stochastic depth (iBOT ``drop_path`` 0.1), as in jaxssl's DINO.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import losses, rng
from jaxssl.augment import patch_masking
from jaxssl.methods import momentum as momentum_lib
from jaxssl.methods.dino import DINO, dino_config, teacher_temperature
from jaxssl.models import registry
from jaxssl.models.dino_head import DINOHead


def ibot_config() -> ml_collections.ConfigDict:
    """``dino_config()`` + ``config.ibot`` with bytedance/ibot ``main_ibot.py`` defaults (the
    README's ViT-S/16 command changes some: configs/ibot_imagenet.py)."""
    c = dino_config()
    c.method = "ibot"
    c.ibot = ml_collections.ConfigDict(dict(
        shared_head=False,            # --shared_head (README ViT-S/16: true)
        patch_out_dim=8192,           # --patch_out_dim (used when not shared)
        teacher_patch_temp=0.07, warmup_teacher_patch_temp=0.04,
        patch_center_momentum=0.9,    # center_momentum2
        cls_loss_weight=1.0,          # lambda1
        patch_loss_weight=1.0,        # lambda2
        mask_prob=0.5,                # share of global crops masked (pred_ratio 0 / > 0)
        mask_ratio=(0.1, 0.5),        # masked fraction of a masked crop (0.3 +- 0.2)
        mask_min_num_patches=0,       # smallest block; 0: iBOT's (min(H, W) // 3) ** 2; DINOv2 4
        mask_max_block_share=0.0,     # largest block / N; 0: no cap (iBOT), DINOv2 0.5
        mask_aspect=(0.3, 1 / 0.3)))  # pred_aspect_ratio
    c.dino.update(dict(out_dim=8192, warmup_teacher_temp_epochs=30))
    c.model.update(dict(backbone="vit_small", patch_size=16))
    return c


class MaskedMultiCrop(nn.Module):
    """Student or teacher: a ViT (with a mask token) and the [CLS] / patch heads.

    ``__call__(globals_, locals_, mask, patch_rows, train)``:
      globals_ ``[G, S, S, C]`` (both global crops, crop-major), locals_ ``[L, s, s, C]`` or
      None, mask ``[G, N]`` bool or None, patch_rows ``[M]`` int rows of the flattened
      ``[G * N]`` patch tokens to project (None: all of them).
    Returns ``(cls_logits [G + L, K], patch_logits [M or G * N, K2], global_cls [G, D])``.
    """
    backbone: nn.Module
    head: nn.Module
    patch_head: Optional[nn.Module] = None

    def __call__(self, globals_, locals_, mask, patch_rows, train: bool):
        out = self.backbone.forward_features(globals_, train=train, mask=mask)
        cls = [out["cls"]]
        if locals_ is not None:
            cls.append(self.backbone.forward_features(locals_, train=train)["cls"])
        patches = out["patches"]
        patches = patches.reshape(-1, patches.shape[-1])
        if patch_rows is not None:
            patches = jnp.take(patches, patch_rows, axis=0)
        cls = jnp.concatenate(cls, axis=0)
        if self.patch_head is None:      # one head: both token kinds in one pass (DINOv2)
            logits = self.head(jnp.concatenate([cls, patches.astype(cls.dtype)], axis=0),
                               train=train)
            return logits[:cls.shape[0]], logits[cls.shape[0]:], out["cls"]
        return self.head(cls, train=train), self.patch_head(patches, train=train), out["cls"]


def apply_train(module: nn.Module, params, batch_stats, *args):
    """``module(*args, train=True)`` -> ``(output, new batch_stats)`` (empty when no BN)."""
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    if not batch_stats:
        return module.apply(variables, *args, train=True), batch_stats
    out, updates = module.apply(variables, *args, train=True, mutable=["batch_stats"])
    return out, updates["batch_stats"]


def _head(out_dim, hidden_dim, bottleneck_dim, num_layers, use_bn, norm_last_layer, dtype, name):
    return DINOHead(int(out_dim), int(hidden_dim), int(bottleneck_dim), int(num_layers),
                    bool(use_bn), bool(norm_last_layer), dtype=dtype, name=name)


class IBOT(DINO):
    """DINO on [CLS] tokens + masked patch prediction against the EMA teacher's patch tokens."""

    #: config section of the masking and patch-loss fields
    section = "ibot"

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        if cls.section not in config:
            raise ValueError(f"config.method='{config.method}' needs config.{cls.section}; start "
                             f"from jaxssl.methods.{cls.section}.{cls.section}_config() (see "
                             f"configs/{cls.section}_digits.py)")
        super().validate_config(config)
        if not str(config.model.backbone).startswith("vit"):
            fail("model.backbone", config.model.backbone,
                 f"{config.method} masks patch tokens: use a ViT (vit_small, vit_base, ...)")
        s = config[cls.section]
        lo, hi = tuple(s.mask_ratio)
        if not 0.0 <= lo <= hi <= 1.0:
            fail(f"{cls.section}.mask_ratio", tuple(s.mask_ratio),
                 "use (min, max) with 0 <= min <= max <= 1 (iBOT / DINOv2: (0.1, 0.5))")
        if not 0.0 < s.mask_prob <= 1.0:
            fail(f"{cls.section}.mask_prob", s.mask_prob,
                 "the share of masked global crops must lie in (0, 1] (iBOT / DINOv2: 0.5)")
        if int(config.data.image_size) % int(config.model.patch_size):
            fail("model.patch_size", config.model.patch_size,
                 f"data.image_size={config.data.image_size} must be a multiple of it")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        self.s = config[self.section]
        self.grid = (self.image_size // int(config.model.patch_size),) * 2
        self.num_patches = self.grid[0] * self.grid[1]
        self.net = self.build_net(config)

    # ----- pieces subclasses change ------------------------------------------------------
    def build_net(self, config) -> MaskedMultiCrop:
        d = self.d
        dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
        head_args = (d.head_hidden_dim, d.head_bottleneck_dim, d.head_num_layers, d.head_use_bn,
                     d.norm_last_layer, dtype)
        patch_head = None if self.s.shared_head else _head(self.s.patch_out_dim, *head_args,
                                                           name="patch_head")
        backbone = registry.build_backbone(config.model).clone(use_mask_token=True)
        return MaskedMultiCrop(backbone, _head(d.out_dim, *head_args, name="head"), patch_head)

    @property
    def patch_out_dim(self) -> int:
        return int(self.d.out_dim if self.s.shared_head else self.s.patch_out_dim)

    def patch_teacher_temp(self, step):
        s = self.s
        return teacher_temperature(step // self.steps_per_epoch,
                                   float(s.warmup_teacher_patch_temp),
                                   float(s.teacher_patch_temp),
                                   int(self.d.warmup_teacher_temp_epochs))

    def masks(self, step, num_crops: int):
        """``[num_crops, N]`` bool block masks of the step's global crops (seed, step)."""
        s = self.s
        cap = float(s.mask_max_block_share) * self.num_patches or float(self.num_patches)
        return patch_masking.blockwise_masks(
            rng.step_key(self.config.seed, "mask", step), num_crops, self.grid,
            tuple(s.mask_ratio), float(s.mask_prob), max_num_patches=cap,
            aspect=tuple(s.mask_aspect),
            min_num_patches=int(s.mask_min_num_patches) or max((min(self.grid) // 3) ** 2, 1))

    # ----- method ------------------------------------------------------------------------
    def init(self, key):
        """``params``: the student; ``model_state``: its BN statistics, the teacher (params and
        BN statistics), ``center`` ``[1, K]`` and ``patch_center`` ``[1, K2]`` zeros."""
        x = self.dummy_input()
        mask = jnp.zeros((x.shape[0], self.num_patches), bool)
        variables = self.net.init(key, x, None, mask, None, train=True)
        params, stats = variables["params"], variables.get("batch_stats", {})
        return params, {"batch_stats": stats,
                        "teacher": {"params": momentum_lib.EmaTeacher.init(params),
                                    "batch_stats": momentum_lib.EmaTeacher.init(stats)},
                        "center": jnp.zeros((1, int(self.d.out_dim)), jnp.float32),
                        "patch_center": jnp.zeros((1, self.patch_out_dim), jnp.float32)}

    def crops(self, batch, step):
        """``(globals [2B, S, S, C], locals [L B, s, s, C] or None)``, crop-major."""
        views = self.make_views(batch, step)
        globals_ = jnp.concatenate([views["global_1"][0], views["global_2"][0]], axis=0)
        locals_ = None
        if "local" in views:
            loc = views["local"]
            locals_ = loc.reshape((-1,) + loc.shape[2:])
        return globals_, locals_

    def forward(self, params, model_state, globals_, locals_, mask, patch_rows):
        """Student and teacher outputs (teacher: unmasked globals only, no gradient)."""
        student, stats = apply_train(self.net, params, model_state["batch_stats"],
                                     globals_, locals_, mask, patch_rows)
        teacher = model_state["teacher"]
        t_out, t_stats = apply_train(self.net, momentum_lib.EmaTeacher.read(teacher["params"]),
                                     teacher["batch_stats"], globals_, None, None, patch_rows)
        t_out = jax.tree.map(lambda a: jax.lax.stop_gradient(a.astype(jnp.float32)), t_out)
        return student, stats, t_out, jax.lax.stop_gradient(t_stats)

    def loss(self, params, model_state, batch, step):
        globals_, locals_ = self.crops(batch, step)
        n = globals_.shape[0] // 2
        mask = self.masks(step, 2 * n)
        (s_cls, s_patch, _), stats, (t_cls, t_patch, _), t_stats = self.forward(
            params, model_state, globals_, locals_, mask, None)
        k, k2 = s_cls.shape[-1], s_patch.shape[-1]
        s_cls = s_cls.astype(jnp.float32).reshape(-1, n, k)
        t_cls = t_cls.reshape(2, n, k)
        t_patch = t_patch.reshape(2 * n, self.num_patches, k2)
        center, patch_center = model_state["center"], model_state["patch_center"]
        temp, temp2 = self.teacher_temp(step), self.patch_teacher_temp(step)
        cls_loss = losses.dino_loss(s_cls, t_cls, center, float(self.d.student_temp), temp)
        t_patch_probs = jax.nn.softmax((t_patch - patch_center.reshape(1, 1, -1)) / temp2, axis=-1)
        patch_loss = losses.ibot_patch_loss(
            s_patch.reshape(2 * n, self.num_patches, k2), t_patch_probs, mask,
            float(self.d.student_temp))
        loss = float(self.s.cls_loss_weight) * cls_loss + float(self.s.patch_loss_weight) * patch_loss
        new_state = {"batch_stats": stats,
                     "teacher": {"params": model_state["teacher"]["params"], "batch_stats": t_stats},
                     "center": losses.dino_center_update(center, t_cls, float(self.d.center_momentum)),
                     "patch_center": losses.dino_center_update(
                         patch_center, t_patch, float(self.s.patch_center_momentum))}
        metrics = {"teacher_temp": temp, "teacher_patch_temp": temp2,
                   "momentum": self.teacher.momentum_at(step), "cls_loss": cls_loss,
                   "patch_loss": patch_loss,
                   "masked_share": jnp.mean(mask.astype(jnp.float32))}
        return loss, (new_state, metrics)


__all__ = ["IBOT", "ibot_config", "MaskedMultiCrop"]
