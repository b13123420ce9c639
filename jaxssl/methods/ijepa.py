"""I-JEPA: predicting target-block features from a context block (Assran et al. 2023).

facebookresearch/ijepa ``src/train.py``, ``src/masks/multiblock.py``, ``src/helper.py``.
One step, for each image of the global batch:

1. one view: a random resized crop (``augment.crop_scale``, I-JEPA (0.3, 1)), no flip, no
   colour, then ImageNet mean/std normalisation (``ijepa.pixel_mean`` / ``pixel_std``);
2. multi-block masks keyed by ``(seed, 'mask', step)``
   (:func:`jaxssl.augment.patch_masking.multiblock_masks`): ``num_targets`` target blocks
   (area ``target_scale``, aspect ``target_aspect``, one size per batch) and a context block
   (area ``context_scale``) without them, cut to the batch's smallest context;
3. target features, no gradient: the EMA target encoder on ALL patches, its patch rows after
   the final LayerNorm, layer-normalised again without affine parameters
   (``F.layer_norm(h, (D,))``, eps 1e-5), the rows of each target block gathered:
   ``s_y [B, T, K_t, D]``;
4. the context encoder on the context patches only, the predictor
   (:class:`jaxssl.models.ijepa_predictor.IJEPAPredictor`) from its output and the target
   positions: ``s_hat [B, T, K_t, D]``;
5. the loss over every target patch and feature (``ijepa.loss``)::

       'smooth_l1' (the released code, F.smooth_l1_loss, beta 1):
           L = mean_{b,t,j,d} l(s_hat - s_y),  l(x) = x^2 / 2 if |x| < 1 else |x| - 1/2
       'mse' (the paper's eq. 1, squared L2 averaged per feature):
           L = mean_{b,t,j,d} (s_hat - s_y)^2

6. after the update, target <- m target + (1 - m) context encoder, ``m`` LINEAR from
   ``teacher.momentum`` (0.996) to ``teacher.momentum_final`` (1.0) over
   ``ijepa.ipe_scale x`` the run's steps, step s using ``m_s`` (the reference's
   ``momentum_scheduler``, first value ``ema[0]`` after the first step).

Static shapes: the reference's context / target lengths change per step; here the sequences
have the largest length the masks can produce (``ijepa.context_budget`` > 0 caps the
context: rows beyond it are dropped in row-major order, as the reference's batch-minimum
cut) with a validity mask that keeps padded rows out of every attention and of the loss
(``jaxssl/models/ijepa_predictor.py``). Padding costs compute, not results.

Evaluation (``backbone_features``): the TARGET encoder on all patches, the mean of its patch
rows after the final LayerNorm (``model.pool='gap'``), the feature I-JEPA's linear probe uses
(average-pooled patch tokens; the ViT has no class token). Reported with ImageMethod's kNN and
linear probes next to the random-init encoder and raw pixels.

Optimizer (``src/helper.py init_opt``): AdamW, no weight decay on biases and 1-D parameters
(the optimizer's ``ndim > 1`` rule; the predictor's ``mask_token [1, 1, d]`` is decayed as in
the reference), weight decay on a cosine 0.04 -> 0.4 (``optim.weight_decay_end``), learning
rate linear warm-up then cosine to ``optim.min_lr``.

Named deviations: (1) jaxssl's ViT keeps its class token as one extra token (I-JEPA's ViT has
none; its output is never used); (2) the encoder keeps jaxssl's ViT initialisation
(xavier-uniform Dense kernels; I-JEPA: truncated N(0, 0.02^2) with ``fix_init_weight``; the
predictor follows I-JEPA's); (3) the learning-rate warm-up starts at 0 (I-JEPA: ``start_lr``
2e-4); (4) schedules are read at the step's index s (I-JEPA's schedulers step first, so its
step s uses index s + 1).

Config section ``config.ijepa`` (:func:`section_defaults`: the ViT-H/14 ImageNet values):

  num_targets, target_scale, target_aspect, context_scale, min_keep   the masks (4,
                (0.15, 0.2), (0.75, 1.5), (0.85, 1.0), 10)
  predictor_dim, predictor_depth, predictor_heads   the predictor (384, 12, 0 = the
                encoder's head count, as the reference)
  loss          'smooth_l1' (released code) | 'mse' (paper eq. 1)
  context_budget  0: the largest possible context; > 0 caps the context sequence
  ipe_scale     the momentum schedule spans ipe_scale x the run (I-JEPA ``ipe_scale``; the lr
                and wd schedules span the run: optim.schedule_total_steps lays the lr longer)
  pixel_mean, pixel_std   per-channel input normalisation
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import config as config_lib
from jaxssl import rng
from jaxssl.augment import image as aug
from jaxssl.augment import patch_masking
from jaxssl.methods import momentum as momentum_lib
from jaxssl.methods.image import ImageMethod
from jaxssl.models import registry
from jaxssl.models.ijepa_predictor import IJEPAPredictor, JointEmbeddingPredictive

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOSSES = ("smooth_l1", "mse")
MOMENTUM_SCHEDULES = ("linear", "constant", "cosine")


def section_defaults() -> ml_collections.ConfigDict:
    """The ``ijepa`` config section with I-JEPA's ViT-H/14 values (in1k_vith14_ep300.yaml)."""
    return ml_collections.ConfigDict(dict(
        num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
        context_scale=(0.85, 1.0), min_keep=10,
        predictor_dim=384, predictor_depth=12, predictor_heads=0,
        loss="smooth_l1", context_budget=0, ipe_scale=1.0,
        pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD,
    ))


def ijepa_config() -> ml_collections.ConfigDict:
    """``base_config()`` + ``config.ijepa`` + ``config.teacher`` (EMA 0.996 -> 1.0, linear),
    a ViT encoder pooled by the mean of its patch tokens, AdamW with I-JEPA's schedules."""
    c = config_lib.base_config()
    c.method = "ijepa"
    c.ijepa = section_defaults()
    c.teacher = momentum_lib.teacher_config(0.996, 1.0, "linear")
    c.model.update(dict(backbone="vit_huge", patch_size=14, pool="gap", posemb="sincos2d",
                        sincos_layout="mae"))
    c.augment.update(dict(crop=True, crop_scale=(0.3, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
                          solarize_prob=0.0))
    c.optim.update(dict(name="adamw", base_lr=0.001, lr_scaling="none", weight_decay=0.04,
                        weight_decay_end=0.4, b1=0.9, b2=0.999, eps=1e-8, warmup_epochs=40.0,
                        schedule="cosine", min_lr=1e-6))
    return c


class LinearEmaTeacher(momentum_lib.EmaTeacher):
    """:class:`EmaTeacher` with I-JEPA's linear momentum schedule
    ``m_s = m_0 + s (m_final - m_0) / (ipe_scale T)`` (step s uses ``m_s``)."""

    def __init__(self, base: float, final: float, total_steps: int, kind: str = "linear",
                 ipe_scale: float = 1.0, section: str = "teacher"):
        if kind not in MOMENTUM_SCHEDULES:
            raise ValueError(f"config field {section}.momentum_schedule={kind!r} is invalid for "
                             f"I-JEPA: use one of {MOMENTUM_SCHEDULES} (I-JEPA: 'linear')")
        if kind != "linear":
            super().__init__(base, final, total_steps, kind, section)
            self._shift = 1
            return
        if not 0.0 <= base <= final <= 1.0:
            raise ValueError(f"config fields {section}.momentum={base!r} / {section}."
                             f"momentum_final={final!r} are invalid: need 0 <= momentum <= "
                             "momentum_final <= 1 (I-JEPA: 0.996, 1.0)")
        span = float(ipe_scale) * max(int(total_steps), 1)

        def momentum_at(step):
            t = jnp.asarray(step, jnp.float32)
            return jnp.minimum(base + t * (final - base) / span, final).astype(jnp.float32)

        self.momentum_at = momentum_at
        self._shift = 0

    def update(self, teacher_params, online_params, step):
        return momentum_lib.ema_update(teacher_params, online_params,
                                       self.momentum_at(step + self._shift))


def smooth_l1(x):
    """torch ``smooth_l1_loss`` elementwise, beta 1: ``x^2 / 2`` if ``|x| < 1`` else ``|x| - 1/2``."""
    ax = jnp.abs(x)
    return jnp.where(ax < 1.0, 0.5 * x * x, ax - 0.5)


def ijepa_loss(pred, target, valid, kind: str = "smooth_l1"):
    """Mean over the valid target rows and every feature: pred, target ``[B, T, K, D]``,
    valid bool ``[B, T, K]`` -> scalar (``'smooth_l1'`` or ``'mse'``)."""
    diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
    per = smooth_l1(diff) if kind == "smooth_l1" else diff * diff
    w = valid.astype(jnp.float32)[..., None]
    count = jnp.maximum(jnp.sum(w) * diff.shape[-1], 1.0)
    return jnp.sum(per * w) / count


def layer_norm(x, eps: float = 1e-5):
    """``F.layer_norm(x, (D,))``: no affine, biased variance, over the last axis."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


class IJEPA(ImageMethod):
    """Context encoder + predictor trained against an EMA target encoder's patch features."""

    num_views = 1

    @classmethod
    def validate_config(cls, config) -> None:
        super().validate_config(config)
        from jaxssl.config import fail
        from jaxssl.models.vit import VIT_SIZES
        if not config.model.backbone.startswith("vit"):
            fail("model.backbone", config.model.backbone,
                 f"I-JEPA encodes the context patches with a ViT; use one of {sorted(VIT_SIZES)}")
        if "ijepa" not in config or "teacher" not in config:
            raise ValueError("config.method='ijepa' needs config.ijepa and config.teacher; start "
                             "from jaxssl.methods.ijepa.ijepa_config() (see configs/ijepa_digits.py)")
        m = config.ijepa
        missing = sorted(set(section_defaults()) - set(m))
        if missing:
            raise ValueError(f"config section ijepa lacks {missing}; start it from "
                             "jaxssl.methods.ijepa.section_defaults()")
        if config.model.pool != "gap":
            fail("model.pool", config.model.pool, "I-JEPA's ViT has no class token to read; use "
                 "'gap' (the mean of the patch tokens, I-JEPA's linear-probe feature)")
        if config.model.posemb != "sincos2d":
            fail("model.posemb", config.model.posemb, "I-JEPA uses fixed 2-D sin-cos positions; "
                 "use 'sincos2d'")
        size, p = int(config.data.image_size), int(config.model.patch_size)
        if p <= 0 or size % p:
            fail("model.patch_size", config.model.patch_size,
                 f"must be a positive divisor of data.image_size={size}")
        patch_masking.multiblock_budgets(size // p, int(m.num_targets), tuple(m.target_scale),
                                         tuple(m.target_aspect), tuple(m.context_scale),
                                         int(m.min_keep), field="ijepa")
        if m.loss not in LOSSES:
            fail("ijepa.loss", m.loss, f"use one of {LOSSES} (released code: 'smooth_l1')")
        for name in ("predictor_dim", "predictor_depth"):
            if int(m[name]) <= 0:
                fail(f"ijepa.{name}", m[name], "must be a positive integer (ViT-H/14: 384, 12)")
        heads = int(m.predictor_heads) or cls.encoder_heads(config.model)
        if int(m.predictor_heads) < 0 or m.predictor_dim % heads or m.predictor_dim % 4:
            fail("ijepa.predictor_heads", m.predictor_heads, f"ijepa.predictor_dim="
                 f"{m.predictor_dim} must be divisible by 4 and by the {heads} heads")
        if int(m.context_budget) < 0:
            fail("ijepa.context_budget", m.context_budget, "use 0 (no cap) or a positive count")
        if not float(m.ipe_scale) >= 1.0:
            fail("ijepa.ipe_scale", m.ipe_scale, "use a value >= 1 (I-JEPA: 1.0 or 1.25)")
        mean, std = tuple(m.pixel_mean), tuple(m.pixel_std)
        if len(mean) != len(std) or len(mean) not in (1, 3) or min(std) <= 0:
            fail("ijepa.pixel_std", std, f"pixel_mean ({mean}) and pixel_std need the same "
                 "length, 1 or 3, and every std > 0")
        LinearEmaTeacher(float(config.teacher.momentum), float(config.teacher.momentum_final),
                         1, str(config.teacher.momentum_schedule))

    @staticmethod
    def encoder_heads(model_cfg) -> int:
        from jaxssl.models.vit import VIT_SIZES
        return int(model_cfg.vit_num_heads or 0) or VIT_SIZES[model_cfg.backbone]["num_heads"]

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        c, m = config, config.ijepa
        dtype = jnp.bfloat16 if c.model.dtype == "bfloat16" else jnp.float32
        self.patch_size = int(c.model.patch_size)
        self.grid = self.image_size // self.patch_size
        self.mask_kwargs = dict(num_targets=int(m.num_targets),
                                target_scale=tuple(m.target_scale),
                                target_aspect=tuple(m.target_aspect),
                                context_scale=tuple(m.context_scale), min_keep=int(m.min_keep))
        self.target_budget, context_max = patch_masking.multiblock_budgets(
            self.grid, field="ijepa", **self.mask_kwargs)
        cap = int(m.context_budget)
        self.context_budget = min(cap, context_max) if cap > 0 else context_max
        encoder = registry.build_backbone(c.model)
        predictor = IJEPAPredictor((self.grid, self.grid), encoder.hidden_dim,
                                   int(m.predictor_dim), int(m.predictor_depth),
                                   int(m.predictor_heads) or encoder.num_heads, dtype=dtype,
                                   remat=str(c.model.remat))
        self.model = JointEmbeddingPredictive(encoder=encoder, predictor=predictor)
        t = c.teacher
        self.teacher = LinearEmaTeacher(float(t.momentum), float(t.momentum_final),
                                        self.total_steps, str(t.momentum_schedule),
                                        float(m.ipe_scale))

    # ----- data -------------------------------------------------------------------------
    def view(self, batch, step):
        """The step's single view ``[B, S, S, C]`` float32 in [0, 1] (stream 'augment', view 0;
        host-cropped ``[B, V, S, S, C]`` batches use their first view)."""
        images = batch["image"]
        if images.ndim == 5:
            images = images[:, 0]
        key = jax.random.fold_in(rng.step_key(self.config.seed, "augment", step), 0)
        return aug.augment_batch(rng.example_keys(key, images.shape[0]), images, self.view_cfg)

    def masks(self, batch_size: int, step):
        """``(ctx_ids, ctx_valid [B, K_c], tgt_ids, tgt_valid [B, T, K_t])`` of the step's
        multi-block masks at the static budgets."""
        key = rng.step_key(self.config.seed, "mask", step)
        context, targets = patch_masking.multiblock_masks(key, batch_size, self.grid,
                                                          **self.mask_kwargs)
        ctx_ids, ctx_valid = patch_masking.mask_indices(context, self.context_budget)
        tgt_ids, tgt_valid = patch_masking.mask_indices(targets, self.target_budget)
        return ctx_ids, ctx_valid, tgt_ids, tgt_valid

    # ----- model ------------------------------------------------------------------------
    def init(self, key):
        """``params``: ``encoder`` (the context encoder) and ``predictor``; ``model_state``:
        ``teacher/params``, the target encoder (a copy of the context encoder)."""
        variables = self.model.init(key, self.normalize(self.dummy_input(2)), *self.masks(2, 0),
                                    train=True)
        params = variables["params"]
        return params, {"teacher": {"params": LinearEmaTeacher.init(params["encoder"])}}

    def target_features(self, teacher_params, images):
        """The target encoder's layer-normalised patch features ``[B, N, D]`` (no gradient)."""
        h = self.model.apply({"params": {"encoder": LinearEmaTeacher.read(teacher_params)}},
                             images, method=JointEmbeddingPredictive.patch_features)
        return jax.lax.stop_gradient(layer_norm(h))

    def loss(self, params, model_state, batch, step):
        x = self.normalize(self.view(batch, step))
        ctx_ids, ctx_valid, tgt_ids, tgt_valid = self.masks(x.shape[0], step)
        h = self.target_features(model_state["teacher"]["params"], x)             # [B, N, D]
        b, t, k = tgt_ids.shape
        target = jnp.take_along_axis(h, tgt_ids.reshape(b, t * k)[:, :, None], axis=1)
        target = target.reshape(b, t, k, h.shape[-1])
        pred = self.model.apply({"params": params}, x, ctx_ids, ctx_valid, tgt_ids, tgt_valid,
                                train=True)
        loss = ijepa_loss(pred, target, tgt_valid, str(self.config.ijepa.loss))
        metrics = {"momentum": self.teacher.momentum_at(step),
                   "context_patches": jnp.sum(ctx_valid[0]).astype(jnp.float32),
                   "target_patches": jnp.sum(tgt_valid[0, 0]).astype(jnp.float32)}
        return loss, (model_state, metrics)

    def after_update(self, state):
        ms = state.model_state
        teacher = self.teacher.update(ms["teacher"]["params"], state.params["encoder"],
                                      state.step)
        return state.replace(model_state={**ms, "teacher": {**ms["teacher"], "params": teacher}})

    # ----- evaluation -------------------------------------------------------------------
    def backbone_features(self, params, model_state, images):
        """The target encoder's mean patch token ``[B, D]`` of eval images in [0, 1]."""
        return self.model.apply({"params": {"encoder": model_state["teacher"]["params"]}},
                                self.normalize(images),
                                method=JointEmbeddingPredictive.features).astype(jnp.float32)

    def flops_per_step(self) -> float | None:
        """Matmul FLOPs of one step at the static (padded) lengths: target encoder forward on
        N patches, context encoder + predictor forward and backward (3x)."""
        c, m = self.config, self.config.ijepa
        enc = self.model.encoder
        d_enc, depth = enc.hidden_dim, enc.depth
        n = self.grid * self.grid
        p2c = self.patch_size ** 2 * self.channels
        batch, t = int(c.train.batch_size), int(m.num_targets)

        def blocks(length, dim, count):
            return count * (2 * length * 12 * dim * dim + 4 * length * length * dim)

        k_c, k_t, d = self.context_budget, self.target_budget, int(m.predictor_dim)
        embed = 2 * n * p2c * d_enc
        target = embed + blocks(1 + n, d_enc, depth)
        context = embed + blocks(1 + k_c, d_enc, depth)
        predictor = (2 * k_c * d_enc * d
                     + t * (blocks(k_c + k_t, d, int(m.predictor_depth)) + 2 * k_t * d * d_enc))
        return float(batch * (target + 3 * (context + predictor)))


__all__ = ["IJEPA", "ijepa_config", "section_defaults", "LinearEmaTeacher", "ijepa_loss",
           "smooth_l1", "layer_norm", "IMAGENET_MEAN", "IMAGENET_STD"]
