"""MoCo v2 (Chen et al. 2020, "Improved baselines ...") and MoCo v3 (Chen, Xie & He 2021).

Both train an online ("query") encoder against a momentum ("key") encoder, an exponential
moving average of it (``jaxssl.methods.momentum``), updated in ``after_update`` -- after the
optimizer step, inside the same ``jit``.

**MoCo v2** (facebookresearch/moco ``builder.py``): ``q = f_q(x_q)``, ``k = f_k(x_k)`` (no
gradient), both L2-normalised; InfoNCE of the positive ``q.k / T`` against the K keys of a
queue ``q.queue / T`` (``jaxssl.losses.info_nce``); then the step's keys replace the oldest
ones in the queue. The key encoder's BatchNorm runs under shuffle BN
(``jaxssl.methods.shuffle_bn``). Encoder = backbone + 2-layer MLP head (2048 -> ReLU -> 128).

  ``moco.symmetric=True`` is solo-learn's MoCo V2+ (``solo/methods/mocov2plus.py``): both
  views are queries and keys, with one queue per view (``queue [2, K, D]``; ``queue[v]``
  holds the keys of view v) and the loss
  ``(info_nce(q1, k2, queue[1]) + info_nce(q2, k1, queue[0])) / 2``; each queue then takes
  its own view's keys at the shared pointer. Every view goes through each encoder in its own
  call, so BN statistics are per view, as solo-learn's per-crop forward.

  The queue ``[K, D]`` float32 and its pointer (int32) live in ``model_state`` and are
  *replicated* on every device: K * D is small (65536 x 128 x 4 B = 32 MiB), and every query
  of every device needs every key of the queue for its negatives -- a sharded queue would
  have to be all-gathered each step anyway. It is updated in place with the keys of the
  whole global batch: ``queue[ptr : ptr + B] = k; ptr = (ptr + B) mod K``, so K must be a
  multiple of the global batch B (validated). Checkpointed with the state, so a resumed run
  continues with exactly the same queue.

**MoCo v3** (facebookresearch/moco-v3 ``builder.py``): two views, the online branch is
backbone + projector + predictor, the momentum branch backbone + projector; the loss
``ctr(q1, k2) + ctr(q2, k1)`` with in-batch negatives over the global batch, each term scaled
by 2T (``jaxssl.losses.mocov3_contrastive``); SyncBN (global statistics under ``jit``) in
both branches, each view normalised by its own statistics (the reference calls the encoder
once per view); momentum 0.99 -> 1 on a half cosine. Views may differ (BYOL's asymmetric
blur / solarize): ``config.augment`` is view 1 and ``config.moco.view2`` overrides fields of
it for view 2. Both views, and the evaluation images, are normalised with
``data.normalize_mean / normalize_std`` when set (moco-v3 ``main_moco.py``: ImageNet's).
The ViT predictor ends in BN without affine (``moco.predictor_last_bn``).

Momentum timing: the reference updates the key encoder at the *start* of iteration ``i``
with ``m(i)``, from the query parameters after iteration ``i - 1``. Here the update runs at
the end of step ``s`` (``after_update``, ``state.step == s``) with ``m(s + 1)`` and the
parameters after step ``s`` -- the same value, used by the same forward pass (that of step
``s + 1``). At step 0 the reference's update is a no-op (the key encoder starts as a copy).

Config: ``config.moco`` (see :func:`moco_config` for every field and its default),
``config.loss.temperature`` (T), ``config.model`` (backbone, head widths, ViT options).
Deviations from the references, each a named option: queries in MoCo v2 use global-batch BN
(the reference's query BN is per GPU); see also ``optim.decay_all_params`` and
``optim.lars_classic_momentum`` in :mod:`jaxssl.optim`.
"""
from __future__ import annotations

import abc
import math


import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import config as config_lib
from jaxssl import losses
from jaxssl.augment import image as aug
from jaxssl.data import normalize as normalize_lib
from jaxssl.augment import views as views_lib
from jaxssl.methods import momentum as momentum_lib
from jaxssl.methods import shuffle_bn
from jaxssl.methods.image import ImageMethod
from jaxssl.models import heads, registry
from jaxssl.models.vit import POOLS, POSEMBS, SINCOS_LAYOUTS

_VIT_OVERRIDES = registry.VIT_OVERRIDES
build_backbone = registry.build_backbone  # the one builder (jaxssl.models.registry)


# --------------------------------------------------------------------------- config

def moco_config(version: str) -> ml_collections.ConfigDict:
    """``base_config()`` plus the MoCo fields, with the reference defaults of ``version``.

    ``config.moco`` fields:
      momentum: m_0, the key encoder's EMA momentum (v2 0.999, v3 0.99).
      momentum_final: m at the end of training for the cosine schedule (v3: 1.0).
      momentum_schedule: 'constant' (v2) | 'cosine' (v3's half cosine).
      view2: ``augment`` fields that differ for the second (key / view-2) crop; empty = same.
      v2 only -- queue_size: K, a multiple of the global batch; shuffle_bn: 'devices' |
        'groups' | 'off' (``jaxssl.methods.shuffle_bn``); bn_groups: G for 'groups';
        symmetric: False (moco: one direction, one queue) | True (solo-learn MoCo V2+:
        both directions, two queues).
      v3 only -- projector_num_layers (2 ResNet, 3 ViT); predictor_hidden_dim (4096);
        predictor_last_bn (False ResNet; True ViT: BN without affine after the predictor,
        moco-v3 builder.py ``MoCo_ViT``).
    ``config.optim`` gains decay_all_params, no_decay_names, frozen_params and
    lars_classic_momentum (``jaxssl.optim``), so presets and the command line can set them.
    ``config.model`` gains the ViT fields pool ('cls' | 'gap'), posemb ('sincos2d' |
    'learned'), freeze_patch_embed, and vit_hidden_dim / vit_depth / vit_num_heads (0 = the
    named size's value; moco-v3's ViT-S sets vit_num_heads=12); v3 also sincos_layout
    ('mocov3': moco-v3's row-first sin-cos table, ``jaxssl.models.vit``).
    Input normalisation: ``data.normalize_mean / normalize_std`` (:func:`normalize_input`).
    """
    if version not in ("v2", "v3"):
        raise ValueError(f"moco_config(version={version!r}): use 'v2' or 'v3'")
    c = config_lib.base_config()
    c.method = f"moco_{version}"
    c.model.update(dict(head=f"moco{version}", head_hidden_dim=2048 if version == "v2" else 4096,
                        head_output_dim=128 if version == "v2" else 256))
    c.model.pool = "cls"
    c.model.posemb = "sincos2d"
    c.model.freeze_patch_embed = False
    for name in _VIT_OVERRIDES:
        c.model[name] = 0
    c.loss.temperature = 0.2 if version == "v2" else 1.0
    c.optim.update(dict(decay_all_params=False, no_decay_names=(), frozen_params=(),
                        lars_classic_momentum=True))
    common = dict(momentum=0.999 if version == "v2" else 0.99, momentum_final=1.0,
                  momentum_schedule="constant" if version == "v2" else "cosine")
    if version == "v2":
        c.moco = ml_collections.ConfigDict(dict(**common, queue_size=65536,
                                                shuffle_bn="devices", bn_groups=8,
                                                symmetric=False))
    else:
        c.moco = ml_collections.ConfigDict(dict(**common, projector_num_layers=2,
                                                predictor_hidden_dim=4096,
                                                predictor_last_bn=False))
        c.model.sincos_layout = "mocov3"
    c.moco.view2 = ml_collections.ConfigDict()
    return c


def _validate_common(config, version: str) -> None:
    from jaxssl.config import fail
    ImageMethod.validate_config(config)
    if "moco" not in config:
        raise ValueError(
            f"config.method={config.method!r} needs a config.moco section; build the config "
            "with jaxssl.methods.moco.moco_config(...) (see configs/moco_digits.py)")
    m = config.moco
    needed = {"v2": ("queue_size", "shuffle_bn", "bn_groups"),
              "v3": ("projector_num_layers", "predictor_hidden_dim")}[version]
    for name in ("momentum", "momentum_final", "momentum_schedule", "view2") + needed:
        if name not in m:
            raise ValueError(f"config field moco.{name} is missing; start from "
                             f"jaxssl.methods.moco.moco_config('{version}')")
    if not 0.0 <= m.momentum <= 1.0:
        fail("moco.momentum", m.momentum, "the EMA momentum must be in [0, 1] (v2 0.999, v3 0.99)")
    if not m.momentum <= m.momentum_final <= 1.0:
        fail("moco.momentum_final", m.momentum_final,
             f"must be in [moco.momentum={m.momentum}, 1] (v3: 1.0)")
    if m.momentum_schedule not in momentum_lib.SCHEDULES:
        fail("moco.momentum_schedule", m.momentum_schedule, f"use one of {momentum_lib.SCHEDULES}")
    expected_head = f"moco{version}"
    if config.model.head != expected_head:
        fail("model.head", config.model.head, f"MoCo {version} uses model.head={expected_head!r}")
    try:
        aug.ViewConfig.from_config(dict(config.augment.to_dict(), **m.view2.to_dict()),
                                   output_size=int(config.data.image_size))
    except ValueError as err:
        raise ValueError(f"config field moco.view2={m.view2.to_dict()!r} is invalid: {err}") from None
    model = config.model
    if model.backbone.startswith("vit"):
        if model.pool not in POOLS:
            fail("model.pool", model.pool, f"use one of {POOLS}")
        if model.posemb not in POSEMBS:
            fail("model.posemb", model.posemb, f"use one of {POSEMBS}")
        if model.sincos_layout not in SINCOS_LAYOUTS:
            fail("model.sincos_layout", model.sincos_layout,
                 f"use one of {SINCOS_LAYOUTS} (moco-v3: 'mocov3', MAE: 'mae')")
        if model.freeze_patch_embed and "patch_embed" not in tuple(config.optim.frozen_params):
            fail("optim.frozen_params", tuple(config.optim.frozen_params),
                 "model.freeze_patch_embed=True also needs 'patch_embed' in optim.frozen_params, "
                 "so the optimizer neither updates nor decays the frozen projection (torch's "
                 "requires_grad=False)")


class Encoder(nn.Module):
    """Backbone then projector: images ``[B, H, W, C]`` -> projections ``[B, d]``."""
    backbone: nn.Module
    projector: nn.Module

    def __call__(self, x, train: bool):
        return self.projector(self.backbone(x, train=train), train=train)

    def features(self, x):
        """Frozen-backbone features ``[B, D]`` (BN with running statistics)."""
        return self.backbone(x, train=False)


def enqueue(queue_KxD: jax.Array, ptr: jax.Array, keys_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """MoCo's ``_dequeue_and_enqueue``: ``queue[ptr : ptr + B] = keys``; ``ptr = (ptr + B) % K``.

    Args:
      queue_KxD: ``[K, D]`` float32 normalised keys, replicated.
      ptr: int32 scalar, the slot of the oldest key (a multiple of B).
      keys_BxD: ``[B, D]`` the step's normalised keys of the whole global batch (no gradient).
    Returns:
      ``(queue, ptr)`` updated. Raises ValueError unless ``K % B == 0``.
    """
    k_size, b_size = queue_KxD.shape[0], keys_BxD.shape[0]
    if k_size % b_size:
        raise ValueError(f"config field moco.queue_size={k_size} is invalid: it must be a multiple "
                         f"of the global batch train.batch_size={b_size}")
    keys = jax.lax.stop_gradient(keys_BxD).astype(queue_KxD.dtype)
    queue = jax.lax.dynamic_update_slice(queue_KxD, keys, (ptr, jnp.zeros_like(ptr)))
    return queue, ((ptr + b_size) % k_size).astype(jnp.int32)


def _apply_train(module: nn.Module, variables: dict, x):
    """Training-mode forward; returns ``(outputs, new batch_stats)`` ({} when there is no BN)."""
    if not variables.get("batch_stats"):
        return module.apply({"params": variables["params"]}, x, train=True), {}
    out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
    return out, updates["batch_stats"]


def _contrast_accuracy(q, k):
    """Fraction of queries whose most similar key (in-batch) is their own: [N, D] each."""
    sim = losses.l2_normalize(q) @ losses.l2_normalize(k).T
    return jnp.mean((jnp.argmax(sim, axis=1) == jnp.arange(q.shape[0])).astype(jnp.float32))


class _MoCoBase(ImageMethod):
    """What v2 and v3 share: encoder, view-2 config, momentum schedule, EMA, evaluation."""

    version = ""

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        m = config.model
        self.encoder = Encoder(build_backbone(m), self.make_projector(m))
        # The key encoder: an EmaTeacher configured by the moco section's momentum fields.
        self.teacher = momentum_lib.EmaTeacher.from_config(config.moco, self.total_steps,
                                                           section="moco")
        self.momentum_at = self.teacher.momentum_at
        self.temperature = float(config.loss.temperature)

    @classmethod
    def view_spec(cls, config) -> views_lib.ViewSpec:
        """Two groups of one view: ``view1`` (``augment``), ``view2`` (``augment`` with the
        ``moco.view2`` overrides: the key crop of v2, BYOL's asymmetric view of v3)."""
        size = int(config.data.image_size)
        return views_lib.ViewSpec((
            views_lib.group_from_config("view1", 1, config.augment, size),
            views_lib.group_from_config("view2", 1, config.augment, size, config.moco.view2)))


    @abc.abstractmethod
    def make_projector(self, model_cfg) -> nn.Module:
        """The projection head of this MoCo version (v2: 2-layer MLP; v3: BN MLP)."""

    def online_encoder_params(self, params):
        """The part of ``params`` that the key encoder averages."""
        return params

    @abc.abstractmethod
    def online_encoder_variables(self, params, model_state) -> dict:
        """The query encoder's variables in the key encoder's layout (what the EMA averages)."""

    def after_update(self, state):
        """EMA of the key encoder with ``m(step + 1)`` (module docstring: momentum timing)."""
        return self.teacher.after_update(state, self.online_encoder_params(state.params))

    def backbone_features(self, params, model_state, images):
        return self.encoder.apply(self.online_encoder_variables(params, model_state),
                                  self.normalize(images), method=Encoder.features)

    def _init_encoder(self, key):
        variables = self.encoder.init(key, self.dummy_input(), train=True)
        return variables["params"], variables.get("batch_stats", {})


class MoCoV2(_MoCoBase):
    """MoCo v2: EMA key encoder, queue of K keys, InfoNCE, shuffle BN (module docstring)."""

    version = "v2"

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        m, batch = (config.moco if "moco" in config else {}), int(config.train.batch_size)
        if "queue_size" in m and (m.queue_size <= 0 or m.queue_size % batch):
            fail("moco.queue_size", m.queue_size,
                 f"the queue size K must be a positive multiple of the global batch "
                 f"train.batch_size={batch} (each step's keys fill slots [ptr, ptr + B) mod K); "
                 f"use e.g. {max(1, round(m.queue_size / batch)) * batch}")
        _validate_common(config, "v2")
        if not isinstance(m.symmetric, bool):
            fail("moco.symmetric", m.symmetric, "use False (moco: one direction, one queue) or "
                 "True (solo-learn MoCo V2+: both directions, two queues)")
        if m.shuffle_bn not in shuffle_bn.MODES:
            fail("moco.shuffle_bn", m.shuffle_bn, f"use one of {shuffle_bn.MODES}")
        if m.shuffle_bn == "groups" and (m.bn_groups < 2 or batch % m.bn_groups):
            fail("moco.bn_groups", m.bn_groups,
                 f"with moco.shuffle_bn='groups' use at least 2 groups that divide the global "
                 f"batch train.batch_size={batch} (the paper: 8 GPUs x 32)")
        if m.shuffle_bn == "devices" and config.mesh.num_devices == 1:
            fail("moco.shuffle_bn", m.shuffle_bn,
                 "mesh.num_devices=1: per-device BN on one device is global BN (the leak); use "
                 "moco.shuffle_bn='groups'")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        mc = config.moco
        self.queue_size = int(mc.queue_size)
        self.shuffle_mode = mc.shuffle_bn
        self.bn_groups = int(mc.bn_groups)
        self.symmetric = bool(mc.symmetric)
        if self.shuffle_mode == "devices" and mesh.devices.size < 2:
            raise ValueError(
                f"config field moco.shuffle_bn='devices' is invalid on a mesh of "
                f"{mesh.devices.size} device: per-device BN on one device is global BN; use "
                f"moco.shuffle_bn='groups' (with moco.bn_groups, e.g. 8)")

    def chance_loss(self) -> float:
        """InfoNCE with every logit equal: ``log(K + 1)``."""
        return math.log(self.queue_size + 1)

    def make_projector(self, model_cfg):
        return heads.mocov2_head(int(model_cfg.head_hidden_dim), int(model_cfg.head_output_dim),
                                 dtype=registry.compute_dtype(model_cfg))

    def online_encoder_variables(self, params, model_state):
        return {"params": params, **({"batch_stats": model_state["batch_stats"]}
                                     if model_state["batch_stats"] else {})}

    def init(self, key):
        """``params``: the query encoder; ``model_state``: its BN stats, the teacher (a copy of
        the encoder), the queue of random unit vectors (``[K, d]``; ``[2, K, d]`` when
        ``moco.symmetric``), and ``queue_ptr`` 0."""
        key_model, key_queue = jax.random.split(key)
        params, batch_stats = self._init_encoder(key_model)
        dim = int(self.config.model.head_output_dim)
        shape = ((2,) if self.symmetric else ()) + (self.queue_size, dim)
        queue = losses.l2_normalize(jax.random.normal(key_queue, shape, jnp.float32))
        return params, {"batch_stats": batch_stats,
                        "teacher": momentum_lib.EmaTeacher.init_state(params, batch_stats),
                        "queue": queue, "queue_ptr": jnp.zeros((), jnp.int32)}

    def keys(self, teacher: dict, view_k, step):
        """Normalised keys ``[B, d]`` float32 of the key views under shuffle BN, and the key
        encoder's new BN statistics. No gradient flows into the teacher."""
        teacher = jax.lax.stop_gradient(teacher)
        variables = {"params": teacher["params"], **({"batch_stats": teacher["batch_stats"]}
                                                     if teacher["batch_stats"] else {})}
        z, batch_stats = shuffle_bn.shuffled_forward(
            lambda v, x: _apply_train(self.encoder, v, x), variables, view_k,
            mode=self.shuffle_mode, seed=self.config.seed, step=step, mesh=self.mesh,
            num_groups=self.bn_groups)
        k = losses.l2_normalize(z.astype(jnp.float32))
        return jax.lax.stop_gradient(k), batch_stats

    def loss(self, params, model_state, batch, step):
        if self.symmetric:
            return self._symmetric_loss(params, model_state, batch, step)
        view_q, view_k = self.two_views(batch, step)
        z_q, batch_stats = _apply_train(
            self.encoder, self.online_encoder_variables(params, model_state), view_q)
        q = z_q.astype(jnp.float32)
        k, teacher_stats = self.keys(model_state["teacher"], view_k, step)
        queue = model_state["queue"]
        loss = losses.info_nce(q, k, queue, self.temperature)
        new_queue, new_ptr = enqueue(queue, model_state["queue_ptr"], k)
        qn = losses.l2_normalize(q)
        l_pos = jnp.sum(qn * k, axis=1)
        l_neg_max = jnp.max(qn @ jax.lax.stop_gradient(queue).T, axis=1)
        metrics = {"contrast_acc": jnp.mean((l_pos > l_neg_max).astype(jnp.float32)),
                   "momentum": self.momentum_at(step)}
        new_state = {"batch_stats": batch_stats,
                     "teacher": {"params": model_state["teacher"]["params"],
                                 "batch_stats": teacher_stats},
                     "queue": new_queue, "queue_ptr": new_ptr}
        return loss, (new_state, metrics)

    def _symmetric_loss(self, params, model_state, batch, step):
        """solo-learn MoCo V2+: ``(f(q1, k2, queue[1]) + f(q2, k1, queue[0])) / 2``, then
        ``queue[v][ptr : ptr + B] = k_v`` for both views."""
        views = self.two_views(batch, step)
        variables = self.online_encoder_variables(params, model_state)
        teacher = dict(model_state["teacher"])
        qs, ks = [], []
        for view in views:  # one call per view: per-view BN statistics
            z, stats = _apply_train(self.encoder, variables, view)
            if stats:
                variables = {**variables, "batch_stats": stats}
            k, teacher_stats = self.keys(teacher, view, step)
            teacher = {**teacher, "batch_stats": teacher_stats}
            qs.append(z.astype(jnp.float32))
            ks.append(k)
        queue, ptr = model_state["queue"], model_state["queue_ptr"]
        loss = (losses.info_nce(qs[0], ks[1], queue[1], self.temperature)
                + losses.info_nce(qs[1], ks[0], queue[0], self.temperature)) / 2
        queue_0, new_ptr = enqueue(queue[0], ptr, ks[0])
        queue_1, _ = enqueue(queue[1], ptr, ks[1])
        qn = losses.l2_normalize(qs[0])
        l_pos = jnp.sum(qn * ks[1], axis=1)
        l_neg_max = jnp.max(qn @ jax.lax.stop_gradient(queue[1]).T, axis=1)
        metrics = {"contrast_acc": jnp.mean((l_pos > l_neg_max).astype(jnp.float32)),
                   "momentum": self.momentum_at(step)}
        new_state = {"batch_stats": variables.get("batch_stats", model_state["batch_stats"]),
                     "teacher": {"params": model_state["teacher"]["params"],
                                 "batch_stats": teacher["batch_stats"]},
                     "queue": jnp.stack([queue_0, queue_1]), "queue_ptr": new_ptr}
        return loss, (new_state, metrics)


class Predicted(nn.Module):
    """MoCo v3's online branch: ``predictor(encoder(x))``; the encoder is shared by name."""
    encoder: Encoder
    predictor: nn.Module

    def __call__(self, x, train: bool):
        return self.predictor(self.encoder(x, train=train), train=train)


def normalize_input(images, data_cfg):
    """``(x - mean) / std`` per channel with ``data.normalize_mean / normalize_std``
    (:func:`jaxssl.data.normalize.normalize_images`, which every image method applies)."""
    return normalize_lib.normalize_images(images, data_cfg.normalize_mean, data_cfg.normalize_std)


class MoCoV3(_MoCoBase):
    """MoCo v3: symmetric in-batch contrastive loss, predictor, cosine momentum."""

    version = "v3"

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        _validate_common(config, "v3")
        m = config.moco
        if m.projector_num_layers < 1:
            fail("moco.projector_num_layers", m.projector_num_layers,
                 "use 2 (ResNet) or 3 (ViT), as moco-v3")
        if m.predictor_hidden_dim <= 0:
            fail("moco.predictor_hidden_dim", m.predictor_hidden_dim, "use a positive width (4096)")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        m = config.model
        self.predictor = heads.mocov3_predictor(
            int(config.moco.predictor_hidden_dim), int(m.head_output_dim),
            last_bn=bool(config.moco.predictor_last_bn), dtype=registry.compute_dtype(m))
        self.online = Predicted(self.encoder, self.predictor)

    def chance_loss(self) -> float:
        """Both directions of ``2T * CE`` with every logit equal: ``4 T log N``."""
        return 4.0 * self.temperature * math.log(int(self.config.train.batch_size))

    def make_projector(self, model_cfg):
        return heads.mocov3_projector(int(model_cfg.head_hidden_dim), int(model_cfg.head_output_dim),
                                      num_layers=int(self.config.moco.projector_num_layers),
                                      dtype=registry.compute_dtype(model_cfg))

    def online_encoder_params(self, params):
        return params["encoder"]

    def online_encoder_variables(self, params, model_state):
        bs = model_state["batch_stats"].get("encoder", {})
        return {"params": params["encoder"], **({"batch_stats": bs} if bs else {})}

    def init(self, key):
        """``params = {'encoder', 'predictor'}``; ``model_state``: their BN stats and the
        teacher (a copy of the encoder: params and BN stats)."""
        variables = self.online.init(key, self.dummy_input(), train=True)
        params, batch_stats = variables["params"], variables.get("batch_stats", {})
        teacher = momentum_lib.EmaTeacher.init_state(params, batch_stats, keys=("encoder",))
        return params, {"batch_stats": batch_stats,
                        "teacher": {"params": teacher["params"]["encoder"],
                                    "batch_stats": teacher["batch_stats"].get("encoder", {})}}

    def loss(self, params, model_state, batch, step):
        view_1, view_2 = self.two_views(batch, step)   # normalised (ImageMethod.make_views)
        online_vars = {"params": params, "batch_stats": model_state["batch_stats"]}
        teacher = jax.lax.stop_gradient(model_state["teacher"])
        teacher_vars = {"params": teacher["params"], "batch_stats": teacher["batch_stats"]}
        qs, ks = [], []
        for view in (view_1, view_2):  # one call per view: per-view BN statistics
            q, online_vars["batch_stats"] = _apply_train(self.online, online_vars, view)
            k, teacher_vars["batch_stats"] = _apply_train(self.encoder, teacher_vars, view)
            qs.append(q.astype(jnp.float32))
            ks.append(jax.lax.stop_gradient(k.astype(jnp.float32)))
        t = self.temperature
        loss = losses.mocov3_contrastive(qs[0], ks[1], t) + losses.mocov3_contrastive(qs[1], ks[0], t)
        metrics = {"contrast_acc": _contrast_accuracy(qs[0], ks[1]), "momentum": self.momentum_at(step)}
        new_state = {"batch_stats": online_vars["batch_stats"],
                     "teacher": {"params": model_state["teacher"]["params"],
                                 "batch_stats": teacher_vars["batch_stats"]}}
        return loss, (new_state, metrics)


__all__ = ["MoCoV2", "MoCoV3", "Encoder", "Predicted", "enqueue", "build_backbone",
           "moco_config", "normalize_input"]
