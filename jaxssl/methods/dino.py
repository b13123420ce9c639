"""DINO (Caron et al. 2021): self-distillation with no labels, multi-crop.

Student ``g_s = head(backbone(x))`` on every crop; teacher ``g_t``: the EMA of the student
(backbone and head, ``config.teacher``: 0.996 -> 1 on a half cosine) on the 2 global crops
only. With the running center ``c`` of the teacher's outputs (``model_state['center']``,
checkpointed with the state), the loss (eq. 1-3, ``jaxssl.losses.dino_loss``) is

    L = mean over pairs (t in globals, s in all crops, s != t) of
        H( softmax((g_t(x_t) - c) / tau_t),  log_softmax(g_s(x_s) / tau_s) )

and after it ``c <- m c + (1 - m) mean(g_t)`` (``dino_center_update``, m = 0.9).
facebookresearch/dino ``main_dino.py``:

* views (:meth:`DINO.view_spec`): ``global_1`` (blur p 1.0), ``global_2`` (blur p 0.1,
  solarize p 0.2) at ``data.image_size`` with ``augment.crop_scale`` (0.4, 1), and
  ``dino.local_crops_number`` ``local`` crops of ``dino.local_crop_size`` (96) with blur
  p 0.5 and ``dino.local_crop_scale`` (0.05, 0.4); the ``dino.global_1`` / ``global_2`` /
  ``local`` sections override ``augment`` per group;
* the backbone runs once per resolution (the globals together, the locals together:
  ``MultiCropWrapper``), the head once on all of it;
* teacher temperature: linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp`` over
  ``warmup_teacher_temp_epochs`` epochs (by epoch, as the reference), then constant;
* the head's ``last_layer`` is frozen for ``freeze_last_layer_epochs`` (neither its gradient
  nor weight decay reaches it: ``cancel_gradients_last_layer``);
* AdamW with weight decay 0.04 -> 0.4 on a cosine (``optim.weight_decay_end``) on the 2-D
  weights and the learned prototype norms ``kernel_g`` (``norm_last_layer=False``; torch's
  ``weight_g`` is ``[K, 1]``, so DINO decays it: ``optim.decay_names``), and each parameter's
  gradient clipped to norm 3 (``optim.grad_clip_per_param``);
* evaluation reads the teacher (:meth:`DINO.backbone_features`; the classifier loads
  ``model_state/teacher``), as DINO's eval_knn.py / eval_linear.py ``--checkpoint_key teacher``.

Named deviations: the student ViT has no stochastic depth (DINO's student: drop path 0.1);
ViT positions are fixed sin-cos recomputed per crop size (DINO: learned, interpolated for the
96 px crops); after the last-layer freeze Adam's bias correction counts from step 0 (torch
counts a parameter's steps from its first gradient).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import config as config_lib
from jaxssl import gradient_transforms, losses
from jaxssl.augment import views as views_lib
from jaxssl.methods import momentum as momentum_lib
from jaxssl.methods.image import ImageMethod
from jaxssl.methods.siamese import apply_train
from jaxssl.models import registry
from jaxssl.models.dino_head import DINOHead
from jaxssl.models.vit import VisionTransformer


def dino_config() -> ml_collections.ConfigDict:
    """``base_config()`` + ``config.dino`` (head, temperatures, crops) + ``config.teacher``,
    with the facebookresearch/dino defaults (``main_dino.py`` argparse)."""
    c = config_lib.base_config()
    c.method = "dino"
    c.dino = ml_collections.ConfigDict(dict(
        out_dim=65536, head_hidden_dim=2048, head_bottleneck_dim=256, head_num_layers=3,
        head_use_bn=False, norm_last_layer=True,
        student_temp=0.1, teacher_temp=0.04, warmup_teacher_temp=0.04,
        warmup_teacher_temp_epochs=0, center_momentum=0.9, freeze_last_layer_epochs=1,
        local_crops_number=8, local_crop_size=96, local_crop_scale=(0.05, 0.4)))
    c.dino.global_1 = ml_collections.ConfigDict(dict(blur_prob=1.0, solarize_prob=0.0))
    c.dino.global_2 = ml_collections.ConfigDict(dict(blur_prob=0.1, solarize_prob=0.2))
    c.dino.local = ml_collections.ConfigDict(dict(blur_prob=0.5, solarize_prob=0.0))
    c.teacher = momentum_lib.teacher_config(0.996, 1.0, "cosine")
    c.augment.crop_scale = (0.4, 1.0)
    # the learned prototype norms (norm_last_layer=False): torch's weight_g is [K, 1], so
    # DINO's get_params_groups decays it with the 2-D weights (utils.py)
    c.optim.decay_names = ("kernel_g",)
    return c


class MultiCrop(nn.Module):
    """The backbone once per resolution, the head once on all: ``[crops] -> [sum n_i, K]``."""
    backbone: nn.Module
    head: nn.Module

    def __call__(self, crops, train: bool):
        feats = [self.backbone(x, train=train) for x in crops]
        return self.head(jnp.concatenate(feats, axis=0), train=train)

    def features(self, x):
        return self.backbone(x, train=False)


class LinearFeaturesViT(VisionTransformer):
    """A :class:`VisionTransformer` whose output is DINO's linear-evaluation feature
    (eval_linear.py, ``get_intermediate_layers``): the final-normed [CLS] token of each of the
    last ``n_last_blocks`` blocks, concatenated, then (``avgpool_patchtokens``) the mean of the
    last block's normed patch tokens: ``[B, H, W, C] -> [B, (n + avgpool) * D]``. The same
    parameters (names and shapes) as the plain ViT, so a pretrained one loads unchanged."""
    n_last_blocks: int = 1
    avgpool_patchtokens: bool = False

    def __call__(self, x, train: bool = False):
        out = self.forward_features(x, train=train, n_last_blocks=self.n_last_blocks)
        cls = out["cls_last_blocks"]
        feats = [cls.reshape(cls.shape[0], -1)]
        if self.avgpool_patchtokens:
            feats.append(jnp.mean(out["patches"], axis=1, dtype=jnp.float32).astype(cls.dtype))
        return jnp.concatenate(feats, axis=-1)


def linear_features_vit(backbone: nn.Module, n_last_blocks: int,
                        avgpool_patchtokens: bool) -> LinearFeaturesViT:
    """``backbone`` (a :class:`VisionTransformer`) with DINO's linear-evaluation output."""
    if not isinstance(backbone, VisionTransformer):
        raise ValueError(f"config field classifier.n_last_blocks={n_last_blocks} / "
                         f"avgpool_patchtokens={avgpool_patchtokens} need a ViT backbone, not "
                         f"{type(backbone).__name__}; use 1 / False")
    fields = {f.name: getattr(backbone, f.name) for f in dataclasses.fields(backbone)
              if f.init and f.name not in ("parent", "name")}
    return LinearFeaturesViT(**fields, n_last_blocks=n_last_blocks,
                             avgpool_patchtokens=avgpool_patchtokens)


def teacher_temperature(epoch, warmup: float, final: float, warmup_epochs: int):
    """``linspace(warmup, final, E)[epoch]`` for ``epoch < E``, then ``final`` (DINOLoss)."""
    e = jnp.asarray(epoch, jnp.float32)
    if warmup_epochs <= 0:
        return jnp.float32(final)
    frac = e / max(warmup_epochs - 1, 1)
    return jnp.where(e < warmup_epochs, warmup + (final - warmup) * jnp.minimum(frac, 1.0),
                     jnp.float32(final)).astype(jnp.float32)


class DINO(ImageMethod):
    """Student / EMA teacher self-distillation over 2 global + N local crops."""

    num_views = 2

    @classmethod
    def view_spec(cls, config) -> views_lib.ViewSpec:
        d = config.dino
        size = int(config.data.image_size)
        groups = [views_lib.group_from_config("global_1", 1, config.augment, size, d.global_1),
                  views_lib.group_from_config("global_2", 1, config.augment, size, d.global_2)]
        if int(d.local_crops_number) > 0:
            local = dict(d.local.to_dict(), crop_scale=tuple(d.local_crop_scale))
            groups.append(views_lib.group_from_config("local", int(d.local_crops_number),
                                                      config.augment, int(d.local_crop_size),
                                                      local))
        return views_lib.ViewSpec(tuple(groups))

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        super().validate_config(config)
        if "dino" not in config or "teacher" not in config:
            raise ValueError("config.method='dino' needs config.dino and config.teacher; start "
                             "from jaxssl.methods.dino.dino_config() (see configs/dino_digits.py)")
        d = config.dino
        for name in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            if not d[name] > 0:
                fail(f"dino.{name}", d[name], "temperatures must be > 0 (DINO: 0.1, 0.04 / 0.07)")
        if not 0.0 <= d.center_momentum <= 1.0:
            fail("dino.center_momentum", d.center_momentum, "use a value in [0, 1] (DINO: 0.9)")
        if d.local_crops_number < 0:
            fail("dino.local_crops_number", d.local_crops_number, "use 0 or more local crops")
        if d.out_dim < 1:
            fail("dino.out_dim", d.out_dim, "the number of prototypes K must be positive")
        momentum_lib.EmaTeacher.from_config(config.teacher, 1)
        cls.view_spec(config)

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        d = self.d = config.dino
        dtype = registry.compute_dtype(config.model)
        head = DINOHead(int(d.out_dim), int(d.head_hidden_dim), int(d.head_bottleneck_dim),
                        int(d.head_num_layers), bool(d.head_use_bn), bool(d.norm_last_layer),
                        dtype=dtype)
        self.net = MultiCrop(registry.build_backbone(config.model), head)
        self.teacher = momentum_lib.EmaTeacher.from_config(config.teacher, self.total_steps)
        self.steps_per_epoch = int(data.feeder.steps_per_epoch)

    def items_per_step(self) -> int:
        return int(self.config.train.batch_size)

    def init(self, key):
        """``params``: the student; ``model_state``: its BN statistics, the teacher (a copy:
        params and BN statistics) and ``center`` ``[1, K]`` zeros."""
        variables = self.net.init(key, [self.dummy_input()], train=True)
        params, stats = variables["params"], variables.get("batch_stats", {})
        return params, {"batch_stats": stats,
                        "teacher": momentum_lib.EmaTeacher.init_state(params, stats),
                        "center": jnp.zeros((1, int(self.d.out_dim)), jnp.float32)}

    def teacher_temp(self, step):
        d = self.d
        return teacher_temperature(step // self.steps_per_epoch, float(d.warmup_teacher_temp),
                                   float(d.teacher_temp), int(d.warmup_teacher_temp_epochs))

    def loss(self, params, model_state, batch, step):
        views = self.make_views(batch, step)
        globals_ = jnp.concatenate([views["global_1"][0], views["global_2"][0]], axis=0)
        crops = [globals_]
        if "local" in views:
            loc = views["local"]
            crops.append(loc.reshape((-1,) + loc.shape[2:]))
        n = globals_.shape[0] // 2
        student, stats = apply_train(self.net, params, model_state["batch_stats"], crops)
        student = student.astype(jnp.float32).reshape(-1, n, student.shape[-1])
        teacher = model_state["teacher"]
        t_out, t_stats = apply_train(self.net, momentum_lib.EmaTeacher.read(teacher["params"]),
                                     teacher["batch_stats"], [globals_])
        t_out = jax.lax.stop_gradient(t_out.astype(jnp.float32).reshape(2, n, -1))
        center = model_state["center"]
        temp = self.teacher_temp(step)
        loss = losses.dino_loss(student, t_out, center, float(self.d.student_temp), temp)
        new_center = losses.dino_center_update(center, t_out, float(self.d.center_momentum))
        new_state = {"batch_stats": stats,
                     "teacher": {"params": teacher["params"],
                                 "batch_stats": jax.lax.stop_gradient(t_stats)},
                     "center": new_center}
        t_probs = jax.nn.softmax((t_out - center.reshape(1, 1, -1)) / temp, axis=-1)
        entropy = -jnp.mean(jnp.sum(t_probs * jnp.log(t_probs + 1e-12), axis=-1))
        metrics = {"teacher_temp": temp, "momentum": self.teacher.momentum_at(step),
                   "teacher_entropy": entropy}
        return loss, (new_state, metrics)

    def after_update(self, state):
        return self.teacher.after_update(state, state.params)

    def wrap_optimizer(self, tx, schedule_inputs):
        """Freeze the head's ``last_layer`` for ``freeze_last_layer_epochs``: its gradient is
        zeroed before the optimizer (Adam's moments stay 0) and its update after (no decay)."""
        n = int(round(float(self.d.freeze_last_layer_epochs) * self.steps_per_epoch))
        if n <= 0:
            return tx

        def last_layer(tree):
            return jax.tree_util.tree_map_with_path(
                lambda path, _: any(getattr(k, "key", None) == "last_layer" for k in path), tree)

        return optax.chain(gradient_transforms.freeze_for_steps(n, last_layer), tx,
                           gradient_transforms.freeze_for_steps(n, last_layer))

    def backbone_features(self, params, model_state, images):
        """The *teacher*'s backbone features (DINO evaluates the teacher: eval_knn.py /
        eval_linear.py ``--checkpoint_key teacher``); ``params`` (the student) is unused."""
        del params
        teacher = model_state["teacher"]
        stats = teacher["batch_stats"]
        variables = {"params": teacher["params"], **({"batch_stats": stats} if stats else {})}
        return self.net.apply(variables, self.normalize(images), method=MultiCrop.features)


__all__ = ["DINO", "dino_config", "MultiCrop", "teacher_temperature"]
