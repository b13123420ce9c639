"""Optimizers (LARS, SGD, AdamW, LAMB), learning-rate schedules and weight-decay masks.

``build_optimizer(cfg, ...)`` turns the ``optim`` section of a config into an optax
``GradientTransformation`` and the learning-rate schedule it uses (``step -> lr``), which the
trainer calls to log the current learning rate.

Weight-decay rule, for every optimizer: leaves with ``ndim <= 1`` (BatchNorm / LayerNorm
scales and offsets, and biases) are never decayed (``decay_mask``). LARS and LAMB also leave
them out of the trust-ratio adaptation (SimCLR's ``exclude_from_layer_adaptation`` defaults to
its weight-decay exclusions, as in the TF LAMB). A shape rule rather than a name rule, so it
holds for every model in ``jaxssl.models`` without knowing module names. Named options change
it where a reference does otherwise: ``decay_all_params`` (PyTorch ``SGD(model.parameters(),
weight_decay=...)`` as in MoCo v2, and ``AdamW(model.parameters())`` in MoCo v3 decay every
parameter), ``no_decay_names`` (timm's ``no_weight_decay()``: e.g. ``cls_token``,
``pos_embed``; LARS also leaves them out of its trust ratio, as SimCLR's
``exclude_from_layer_adaptation`` defaults to its weight-decay exclusions), and ``frozen_params`` (leaves under a module or parameter of that name get no
update and no weight decay at all, like torch's ``requires_grad=False``; MoCo v3's frozen ViT
patch projection ``patch_embed``). The trust-ratio mask of LARS / LAMB stays the shape rule.

Config fields (``cfg`` is an ``ml_collections.ConfigDict`` or anything with attribute access;
``default_config()`` gives all of them, with the defaults ``jaxssl.config.base_config``
declares for every method):

  name               'lars' | 'sgd' | 'adamw' | 'lamb'
  base_lr            > 0, the learning rate at ``lr_scaling``'s reference batch
  lr_scaling         'linear': base_lr * B / 256;  'sqrt': base_lr * sqrt(B);  'none': base_lr
  weight_decay       L2 coefficient (decoupled for adamw / lamb), never on ndim <= 1 leaves
  momentum           lars, sgd
  nesterov           sgd (default False)
  trust_coefficient  lars eta (default 0.001, SimCLR)
  b1, b2, eps        adamw, lamb
  warmup_epochs      linear warmup length in epochs (float)
  warmup_fraction    if > 0, overrides warmup_epochs: warmup = fraction * total_steps (default 0)
  schedule           'cosine' | 'linear' | 'step' | 'constant' (after the warmup), or
                     'cosine_epoch' (cosine set once per epoch, no warmup: moco-v3 lincls)
  min_lr             'cosine': the final learning rate (default 0; MAE fine-tuning 1e-6)
  step_boundaries_epochs, step_factor   'step' only: lr *= step_factor at each boundary
                     (default factor 0.1, boundaries (): set them, MoCo's linear eval (60, 80))
  grad_clip_norm     global-norm clipping before the optimizer; 0 = off (default 0)
  decay_all_params   decay every leaf, norms and biases included (default False; MoCo v2's
                     PyTorch SGD and MoCo v3's AdamW do this)
  no_decay_names     names of modules / parameters never decayed (default (); timm and MAE:
                     ('cls_token', 'pos_embed'))
  decay_names        names of parameters decayed although ``ndim <= 1`` (default (); DINO:
                     ('kernel_g',), its learned prototype norms, ``weight_g`` ``[K, 1]`` in torch,
                     which DINO's ``get_params_groups`` decays as a 2-D tensor)
  frozen_params      names of modules / parameters that are neither updated nor decayed
                     (default (); MoCo v3 ViT: ('patch_embed',))
  lars_classic_momentum  lars: True (default) SimCLR's "classic" momentum, lr inside the
                     momentum buffer; False the PyTorch / MoCo v3 LARS, ``mu = m mu + g'``,
                     ``w -= lr mu`` (the two differ only while the lr changes)
  lars_clip_lr       lars: False (default); True solo-learn's LARS (``clip_lr=True``): trust
                     ratio ``eta ||w|| / (||g|| + wd ||w||)`` clipped by the lr,
                     ``min(r / lr_t, 1)``, so a layer's step is ``min(r, lr_t)``; needs
                     ``lars_classic_momentum=False`` (PyTorch momentum, as solo-learn)
  schedule_total_steps, schedule_start_step   0 / 0 (default): the schedule spans this run.
                     ``schedule_total_steps > 0``: warmup (``warmup_fraction`` of it) and
                     decay are laid over that many steps, and this run's step s uses the
                     schedule's step ``schedule_start_step + s`` -- one schedule split over
                     several runs (BERT's 90% at T=128, then 10% at T=512).
  weight_decay_end   adamw: >= 0 decays the weight decay from weight_decay to this on a cosine
                     over the run (DINO 0.04 -> 0.4); -1 (default) keeps it constant
  grad_clip_per_param  > 0: each parameter's gradient clipped to this norm separately (DINO
                     3.0, ``utils.clip_gradients``); 0 (default) off
  adam_bias_correction  adamw: True (default) Adam with bias correction (optax.adamw); False
                     google-research/bert's AdamWeightDecayOptimizer, ``u = m / (sqrt(v) + eps)``
                     on the raw moments (:func:`adamw_no_bias_correction`)
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import config as config_lib
from jaxssl import gradient_transforms

Schedule = Callable[[Any], jax.Array]

OPTIMIZERS = ("lars", "sgd", "adamw", "lamb")
SCHEDULES = ("cosine", "cosine_epoch", "linear", "step", "constant")
LR_SCALINGS = ("linear", "sqrt", "none")
# Fields a hand-built optim section (a minimal ConfigDict, a namespace) may leave out; their
# value is then the schema's default (default_config). A config from
# jaxssl.config.base_config declares every field, so nothing is ever filled in for it.
OPTIONAL_FIELDS = ("nesterov", "trust_coefficient", "warmup_fraction", "step_factor",
                   "grad_clip_norm", "decay_all_params", "no_decay_names", "frozen_params",
                   "min_lr", "lars_classic_momentum", "schedule_total_steps",
                   "schedule_start_step", "adam_bias_correction", "weight_decay_end",
                   "grad_clip_per_param", "lars_clip_lr", "decay_names")


def default_config() -> ml_collections.ConfigDict:
    """Every ``optim`` field with its default, as declared once in
    :func:`jaxssl.config.base_config` (SimCLR's ImageNet values: LARS, 0.3 x B/256, 10 warmup
    epochs, cosine)."""
    return ml_collections.ConfigDict(config_lib.base_config().optim.to_dict())


@functools.lru_cache(maxsize=1)
def _schema_defaults() -> dict:
    return config_lib.base_config().optim.to_dict()


# --------------------------------------------------------------------------- masks

def decay_mask(params: Any) -> Any:
    """``True`` for leaves that get weight decay (and LARS/LAMB trust ratio): ``ndim > 1``.

    Conv and dense kernels and embeddings are decayed; BatchNorm / LayerNorm ``scale`` and
    ``bias`` and all biases (``ndim <= 1``) are not. Works on arrays and ``ShapeDtypeStruct``s.
    """
    return jax.tree.map(lambda x: len(jnp.shape(x) if not hasattr(x, "shape") else x.shape) > 1, params)


def _path_names(path) -> set[str]:
    """The dict keys / attribute names along a pytree path."""
    names = set()
    for entry in path:
        for attr in ("key", "name"):
            if hasattr(entry, attr):
                names.add(str(getattr(entry, attr)))
    return names


def names_mask(params: Any, names) -> Any:
    """``True`` for leaves whose path contains a key equal to one of ``names``.

    ``names_mask(params, ['patch_embed'])`` selects ``.../patch_embed/kernel`` and
    ``.../patch_embed/bias``; matching is exact per path element, never a substring.
    """
    names = set(names)
    return jax.tree_util.tree_map_with_path(lambda path, _: bool(_path_names(path) & names), params)


def weight_decay_mask(params: Any, *, decay_all: bool = False, no_decay_names=(),
                      frozen_names=(), decay_names=()) -> Any:
    """Leaves that get weight decay: ``decay_mask`` (``ndim > 1``) plus leaves named in
    ``decay_names``, or every leaf when ``decay_all``; minus leaves named in
    ``no_decay_names`` or ``frozen_names``."""
    base = (jax.tree.map(lambda _: True, params) if decay_all else decay_mask(params))
    if decay_names:
        base = jax.tree.map(lambda d, n: bool(d) or n, base, names_mask(params, decay_names))
    excluded = names_mask(params, tuple(no_decay_names) + tuple(frozen_names))
    return jax.tree.map(lambda d, e: bool(d) and not e, base, excluded)


# --------------------------------------------------------------------------- LARS

def lars(learning_rate: float | Schedule, *, momentum: float = 0.9, weight_decay: float = 0.0,
         trust_coefficient: float = 0.001, nesterov: bool = False,
         mask: Any = decay_mask, trust_mask: Any = None,
         classic_momentum: bool = True) -> optax.GradientTransformation:
    """LARS exactly as SimCLR's reference (tf2/lars_optimizer.py, ``classic_momentum=True``).

    Per leaf ``w`` with gradient ``g`` (``mask(w)`` True: decay and adaptation on):

        g'    = g + wd * w                                    (weight decay, masked)
        r     = eta * ||w|| / ||g'||  if ||w|| > 0 and ||g'|| > 0 else 1   (trust ratio, masked)
        v     = m * v + lr_t * r * g'                         (classic momentum: lr inside)
        w    <- w - v                 (nesterov: w <- w - (m * v + lr_t * r * g'))

    Masked-out leaves (``ndim <= 1`` by default) use ``g' = g`` and ``r = 1``. Built from optax
    pieces: ``add_decayed_weights -> masked(scale_by_trust_ratio) -> scale_by_learning_rate ->
    trace``; because the learning rate is applied before ``trace``, the momentum buffer holds
    ``-v`` and a schedule's change of lr does not rescale past momentum (classic momentum).

    Args:
      learning_rate: float or ``step -> lr`` schedule (``lr_t`` above).
      momentum: ``m``. weight_decay: ``wd``. trust_coefficient: ``eta`` (0.001 in SimCLR).
      nesterov: Nesterov variant of the reference (``use_nesterov``).
      mask: pytree of bools or ``params -> pytree`` choosing decayed / adapted leaves.
      trust_mask: leaves that get the trust ratio, if different from ``mask`` (None: ``mask``).
      classic_momentum: False gives moco-v3's ``optimizer.LARS``: ``mu = m * mu + r * g'``,
        ``w <- w - lr_t * mu`` (optax ``trace`` before the learning rate).
    """
    trust = optax.masked(optax.scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=0.0),
                         mask if trust_mask is None else trust_mask)
    if not classic_momentum:
        return optax.chain(optax.add_decayed_weights(weight_decay, mask=mask), trust,
                           optax.trace(decay=momentum, nesterov=nesterov),
                           optax.scale_by_learning_rate(learning_rate))
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=mask),
        trust,
        optax.scale_by_learning_rate(learning_rate),
        optax.trace(decay=momentum, nesterov=nesterov),
    )


def lamb(learning_rate: float | Schedule, *, b1: float, b2: float, eps: float,
         weight_decay: float, mask: Any = decay_mask,
         trust_mask: Any = None) -> optax.GradientTransformation:
    """LAMB (You et al. 2020) with decay and trust ratio both masked by ``mask`` (the trust
    ratio by ``trust_mask`` instead, if given).

    ``u = adam(g) + wd * w`` (masked), ``r = ||w|| / ||u||`` (1 when either is 0; masked),
    ``w <- w - lr * r * u``. Unlike ``optax.lamb`` (which adapts every leaf), norms and biases
    are also excluded from the trust ratio, the default of TF-Addons' LAMB used for BERT.
    """
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask=mask),
        optax.masked(optax.scale_by_trust_ratio(), mask if trust_mask is None else trust_mask),
        optax.scale_by_learning_rate(learning_rate),
    )


def scale_by_adam_no_bias_correction(b1: float = 0.9, b2: float = 0.999,
                                     eps: float = 1e-6) -> optax.GradientTransformation:
    """Adam's direction without bias correction (google-research/bert ``optimization.py``,
    ``AdamWeightDecayOptimizer.apply_gradients``), per leaf, moments starting at 0::

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2;   u = m / (sqrt(v) + eps)

    (optax's ``scale_by_adam`` divides m by ``1 - b1^t`` and v by ``1 - b2^t`` first.)
    """

    def init_fn(params):
        zeros = lambda p: jnp.zeros_like(p, dtype=jnp.float32)  # noqa: E731
        return (jax.tree.map(zeros, params), jax.tree.map(zeros, params))

    def update_fn(updates, state, params=None):
        del params
        mu, nu = state
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), nu, updates)
        out = jax.tree.map(lambda m, v, g: (m / (jnp.sqrt(v) + eps)).astype(g.dtype),
                           mu, nu, updates)
        return out, (mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adamw_no_bias_correction(learning_rate: float | Schedule, *, b1: float, b2: float,
                             eps: float, weight_decay: float,
                             mask: Any = decay_mask) -> optax.GradientTransformation:
    """BERT's ``AdamWeightDecayOptimizer``: ``w <- w - lr * (m / (sqrt(v) + eps) + wd * w)``
    (decay masked by ``mask``), moments without bias correction
    (:func:`scale_by_adam_no_bias_correction`). The same chain as ``optax.adamw``."""
    return optax.chain(
        scale_by_adam_no_bias_correction(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask=mask),
        optax.scale_by_learning_rate(learning_rate),
    )


# --------------------------------------------------------------------------- schedules

def scaled_learning_rate(base_lr: float, global_batch: int, scaling: str) -> float:
    """Peak learning rate: 'linear' base_lr * B / 256 (Goyal et al.), 'sqrt' base_lr * sqrt(B)
    (SimCLR appendix B.1), 'none' base_lr."""
    if scaling == "linear":
        return base_lr * global_batch / 256.0
    if scaling == "sqrt":
        return base_lr * math.sqrt(global_batch)
    if scaling == "none":
        return base_lr
    raise ValueError(f"optim.lr_scaling={scaling!r} is not one of {LR_SCALINGS}")


def _warmup_factor(step, warmup_steps: int):
    """``step / warmup_steps`` while ``step < warmup_steps``, else 1 (0 at the first step)."""
    if warmup_steps <= 0:
        return jnp.ones_like(step)
    return jnp.minimum(step / warmup_steps, 1.0)


def half_cosine(progress, start: float, end: float) -> jax.Array:
    """``end + (start - end) (1 + cos(pi p)) / 2`` at ``progress`` p in [0, 1]: from ``start``
    (p = 0) to ``end`` (p = 1). The one half cosine of the library: the learning rate's decay,
    DINO's weight decay and the EMA teacher's momentum (BYOL, DINO, MoCo v3)."""
    return end + 0.5 * (start - end) * (1.0 + jnp.cos(jnp.pi * progress))


def warmup_cosine_schedule(peak_lr: float, warmup_steps: int, total_steps: int,
                           min_lr: float = 0.0) -> Schedule:
    """Linear warmup 0 -> peak over ``warmup_steps``, then cosine to ``min_lr`` at ``total_steps``.

        lr(t) = peak * t / W                                                t < W
        lr(t) = min + (peak - min) * 0.5 * (1 + cos(pi * (t - W) / (T - W)))  W <= t <= T

    SimCLR's ``WarmUpAndCosineDecay``, MoCo v3's ``adjust_learning_rate`` and MAE's
    ``util/lr_sched.adjust_learning_rate`` (per iteration, ``min_lr``).
    """
    decay_steps = max(total_steps - warmup_steps, 1)

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        progress = jnp.clip((t - warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = half_cosine(progress, peak_lr, min_lr)
        return jnp.where(t < warmup_steps, peak_lr * _warmup_factor(t, warmup_steps), cosine)

    return schedule


def epoch_cosine_schedule(peak_lr: float, steps_per_epoch: int, total_steps: int) -> Schedule:
    """Cosine over whole epochs, set at the start of each (moco-v3 ``main_lincls.py``):

        lr(t) = peak * 0.5 * (1 + cos(pi * floor(t / S) / E)),   E = T / S epochs
    """
    epochs = total_steps / steps_per_epoch

    def schedule(step):
        epoch = jnp.floor(jnp.asarray(step, jnp.float32) / steps_per_epoch)
        return 0.5 * peak_lr * (1.0 + jnp.cos(jnp.pi * epoch / epochs))

    return schedule


def warmup_linear_schedule(peak_lr: float, warmup_steps: int, total_steps: int) -> Schedule:
    """Linear warmup 0 -> peak over ``warmup_steps``, then linear decay to 0 at ``total_steps``.

        lr(t) = peak * t / W                t < W
        lr(t) = peak * (T - t) / (T - W)    W <= t <= T, 0 after

    Note: Google BERT's ``optimization.py`` decays ``peak * (1 - t / T)`` from step 0 and
    overrides it during warmup, so just after warmup its lr is ``peak * (1 - W / T)`` (a
    relative difference of at most ``W / T``, 1% for 10k of 1M steps); this schedule is the
    continuous form (HF ``get_linear_schedule_with_warmup``).
    """
    decay_steps = max(total_steps - warmup_steps, 1)

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        linear = peak_lr * jnp.clip((total_steps - t) / decay_steps, 0.0, 1.0)
        return jnp.where(t < warmup_steps, peak_lr * _warmup_factor(t, warmup_steps), linear)

    return schedule


def step_schedule(peak_lr: float, boundaries_steps: list[int], factor: float,
                  warmup_steps: int = 0) -> Schedule:
    """``peak * factor ** (number of boundaries b with t >= b)``, after an optional linear warmup.

    MoCo's linear eval: boundaries at epochs 60 and 80 (``lr *= 0.1 if epoch >= milestone``).
    """
    bounds = jnp.asarray(sorted(boundaries_steps), jnp.float32).reshape(-1)

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        passed = jnp.sum((t >= bounds).astype(jnp.float32))
        return peak_lr * jnp.power(factor, passed) * _warmup_factor(t, warmup_steps)

    return schedule


def constant_schedule(peak_lr: float, warmup_steps: int = 0) -> Schedule:
    """``peak`` after an optional linear warmup."""

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        return peak_lr * _warmup_factor(t, warmup_steps)

    return schedule


# --------------------------------------------------------------------------- config -> optax

def _field(cfg: Any, name: str):
    if hasattr(cfg, name):
        return getattr(cfg, name)
    if name in OPTIONAL_FIELDS:
        return _schema_defaults()[name]
    raise ValueError(f"optim.{name} is missing from the config; set it "
                     f"(jaxssl.optim.default_config() lists every field with its default)")


def _choice(cfg: Any, name: str, allowed: tuple[str, ...]) -> str:
    value = _field(cfg, name)
    if value not in allowed:
        raise ValueError(f"optim.{name}={value!r} is not supported; use one of {allowed}")
    return value


def warmup_steps_from_config(cfg: Any, total_steps: int, steps_per_epoch: int) -> int:
    """``round(warmup_fraction * total_steps)`` if ``warmup_fraction > 0`` (SimCLR v2's 5%),
    else ``round(warmup_epochs * steps_per_epoch)``."""
    fraction = float(_field(cfg, "warmup_fraction"))
    if fraction < 0 or fraction >= 1:
        raise ValueError(f"optim.warmup_fraction={fraction} must be in [0, 1); 0 uses optim.warmup_epochs")
    if fraction > 0:
        return int(round(fraction * total_steps))
    epochs = float(_field(cfg, "warmup_epochs"))
    if epochs < 0:
        raise ValueError(f"optim.warmup_epochs={epochs} must be >= 0")
    return int(round(epochs * steps_per_epoch))


def build_schedule(cfg: Any, *, global_batch: int, total_steps: int, steps_per_epoch: int) -> Schedule:
    """The ``step -> lr`` function the config describes (peak lr scaled by the global batch)."""
    base_lr = float(_field(cfg, "base_lr"))
    if not base_lr > 0:
        raise ValueError(f"optim.base_lr={base_lr} must be > 0 (the learning rate at batch 256 for "
                         f"lr_scaling='linear')")
    scaling = _choice(cfg, "lr_scaling", LR_SCALINGS)
    kind = _choice(cfg, "schedule", SCHEDULES)
    if total_steps <= 0 or steps_per_epoch <= 0:
        raise ValueError(f"build_optimizer: total_steps={total_steps} and steps_per_epoch={steps_per_epoch} "
                         f"must be positive")
    peak = scaled_learning_rate(base_lr, global_batch, scaling)
    span, start = int(_field(cfg, "schedule_total_steps")), int(_field(cfg, "schedule_start_step"))
    if span < 0 or start < 0:
        raise ValueError(f"optim.schedule_total_steps={span} and optim.schedule_start_step={start} "
                         "must be >= 0 (0 / 0: the schedule spans this run)")
    if span == 0 and start:
        raise ValueError(f"optim.schedule_start_step={start} needs optim.schedule_total_steps > 0 "
                         "(the length of the whole schedule this run is a part of)")
    if span and start + total_steps > span:
        raise ValueError(f"optim.schedule_start_step={start} + this run's {total_steps} steps exceed "
                         f"optim.schedule_total_steps={span}; the learning rate would be 0 from "
                         f"step {span - start}: raise schedule_total_steps or shorten the run")
    span = span or total_steps
    warmup = warmup_steps_from_config(cfg, span, steps_per_epoch)
    if warmup > span:
        raise ValueError(f"optim warmup of {warmup} steps exceeds the {span} training steps; "
                         f"lower optim.warmup_epochs / optim.warmup_fraction")
    if kind == "cosine":
        schedule = warmup_cosine_schedule(peak, warmup, span, float(_field(cfg, "min_lr")))
    elif kind == "cosine_epoch":
        if warmup:
            raise ValueError("optim.schedule='cosine_epoch' has no warm-up; set "
                             "optim.warmup_epochs=0")
        schedule = epoch_cosine_schedule(peak, steps_per_epoch, span)
    elif kind == "linear":
        schedule = warmup_linear_schedule(peak, warmup, span)
    elif kind == "step":
        epochs = tuple(_field(cfg, "step_boundaries_epochs"))
        if not epochs:
            raise ValueError("optim.step_boundaries_epochs=() is empty, so optim.schedule='step' "
                             "would never step; set the epochs at which lr *= step_factor, "
                             "e.g. (60, 80) (MoCo's linear evaluation)")
        bounds = [int(round(float(e) * steps_per_epoch)) for e in epochs]
        schedule = step_schedule(peak, bounds, float(_field(cfg, "step_factor")), warmup)
    else:
        schedule = constant_schedule(peak, warmup)
    if not start:
        return schedule
    return lambda step: schedule(jnp.asarray(step, jnp.float32) + start)


def weight_decay_cosine(start: float, end: float, total_steps: int) -> Schedule:
    """``wd(t) = end + (start - end) * (1 + cos(pi t / T)) / 2`` (DINO ``cosine_scheduler``)."""
    def schedule(step):
        t = jnp.clip(jnp.asarray(step, jnp.float32) / max(int(total_steps), 1), 0.0, 1.0)
        return half_cosine(t, start, end)
    return schedule


def build_optimizer(cfg: Any, *, global_batch: int, total_steps: int,
                    steps_per_epoch: int) -> tuple[optax.GradientTransformation, Schedule]:
    """``(optax transformation, step -> lr schedule)`` for the ``optim`` config section.

    The transformation is ``[clip_by_global_norm ->] optimizer [-> zero frozen leaves]`` with
    the schedule built in; weight decay never touches ``ndim <= 1`` leaves (``decay_mask``)
    unless ``decay_all_params``, nor leaves named in ``no_decay_names`` / ``frozen_params``;
    leaves named in ``frozen_params`` get a zero update. Raises ValueError naming the field for
    an unknown ``name`` / ``schedule`` / ``lr_scaling`` or ``base_lr <= 0``.
    """
    name = _choice(cfg, "name", OPTIMIZERS)
    schedule = build_schedule(cfg, global_batch=global_batch, total_steps=total_steps,
                              steps_per_epoch=steps_per_epoch)
    wd = float(_field(cfg, "weight_decay"))
    if wd < 0:
        raise ValueError(f"optim.weight_decay={wd} must be >= 0")
    wd_end = float(_field(cfg, "weight_decay_end"))
    if wd_end >= 0 and (name != "adamw" or not bool(_field(cfg, "adam_bias_correction"))):
        raise ValueError(f"optim.weight_decay_end={wd_end} (a weight-decay schedule) is "
                         f"implemented for optim.name='adamw' only, not {name!r}; set it to -1")
    no_decay = _names(cfg, "no_decay_names")
    frozen = _names(cfg, "frozen_params")
    decay_all = bool(_field(cfg, "decay_all_params"))
    decay_named = _names(cfg, "decay_names")
    if decay_all or no_decay or frozen or decay_named:
        def wd_mask(params):
            return weight_decay_mask(params, decay_all=decay_all, no_decay_names=no_decay,
                                     frozen_names=frozen, decay_names=decay_named)

        def trust_mask(params):  # SimCLR: exclude_from_layer_adaptation = the wd exclusions
            return weight_decay_mask(params, decay_all=False, no_decay_names=no_decay,
                                     frozen_names=frozen)
    else:
        wd_mask = trust_mask = decay_mask
    clip_lr = bool(_field(cfg, "lars_clip_lr"))
    if clip_lr and (name != "lars" or bool(_field(cfg, "lars_classic_momentum"))):
        raise ValueError(f"optim.lars_clip_lr=True is solo-learn's LARS: it needs "
                         f"optim.name='lars' (not {name!r}) and "
                         "optim.lars_classic_momentum=False; or set lars_clip_lr=False")
    if clip_lr:
        tx = optax.chain(
            gradient_transforms.scale_by_clipped_lars_trust(
                float(_field(cfg, "trust_coefficient")), wd, schedule, mask=wd_mask),
            optax.trace(decay=float(_field(cfg, "momentum")), nesterov=bool(_field(cfg, "nesterov"))),
            optax.scale_by_learning_rate(schedule))
    elif name == "lars":
        tx = lars(schedule, momentum=float(_field(cfg, "momentum")), weight_decay=wd,
                  trust_coefficient=float(_field(cfg, "trust_coefficient")),
                  nesterov=bool(_field(cfg, "nesterov")), mask=wd_mask, trust_mask=trust_mask,
                  classic_momentum=bool(_field(cfg, "lars_classic_momentum")))
    elif name == "sgd":
        # PyTorch SGD: v = m * v + (g + wd * w); w -= lr * v (momentum before the lr).
        tx = optax.chain(optax.add_decayed_weights(wd, mask=wd_mask),
                         optax.sgd(schedule, momentum=float(_field(cfg, "momentum")) or None,
                                   nesterov=bool(_field(cfg, "nesterov"))))
    elif name == "adamw" and not bool(_field(cfg, "adam_bias_correction")):
        tx = adamw_no_bias_correction(schedule, b1=float(_field(cfg, "b1")),
                                      b2=float(_field(cfg, "b2")), eps=float(_field(cfg, "eps")),
                                      weight_decay=wd, mask=wd_mask)
    elif name == "adamw":  # DINO: decoupled decay on a cosine wd -> wd_end (optax >= 0.2.7)
        decay = weight_decay_cosine(wd, wd_end, total_steps) if wd_end >= 0 else wd
        tx = optax.adamw(schedule, b1=float(_field(cfg, "b1")), b2=float(_field(cfg, "b2")),
                         eps=float(_field(cfg, "eps")), weight_decay=decay, mask=wd_mask)
    else:
        tx = lamb(schedule, b1=float(_field(cfg, "b1")), b2=float(_field(cfg, "b2")),
                  eps=float(_field(cfg, "eps")), weight_decay=wd, mask=wd_mask,
                  trust_mask=decay_mask)
    if frozen:
        tx = optax.chain(tx, optax.masked(optax.set_to_zero(),
                                          lambda params: names_mask(params, frozen)))
    clip_each = float(_field(cfg, "grad_clip_per_param"))
    if clip_each < 0:
        raise ValueError(f"optim.grad_clip_per_param={clip_each} must be >= 0 (0 = off; DINO 3.0)")
    if clip_each > 0:
        tx = optax.chain(gradient_transforms.clip_by_parameter_norm(clip_each), tx)
    clip = float(_field(cfg, "grad_clip_norm"))
    if clip < 0:
        raise ValueError(f"optim.grad_clip_norm={clip} must be >= 0 (0 = no clipping)")
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    return tx, schedule


def _names(cfg: Any, field: str) -> tuple[str, ...]:
    value = _field(cfg, field)
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"optim.{field}={value!r} must be a tuple of module / parameter names, "
                         f"e.g. ('patch_embed',)")
    return tuple(value)


# --------------------------------------------------------------------------- layer-wise lr decay

_VIT_EMBEDDING_NAMES = frozenset({"cls_token", "pos_embed", "patch_embed"})
_VIT_BLOCK_NAME = re.compile(r"blocks_(\d+)")


def _entry_name(entry) -> str:
    """The dict key / attribute name of one pytree path entry."""
    return str(getattr(entry, "key", getattr(entry, "name", "")))


def _vit_layer_id(path, num_layers: int) -> int:
    """MAE ``get_layer_id_for_vit`` on a Flax path: the first path element that names a ViT
    embedding (``cls_token``, ``pos_embed``, ``patch_embed``) gives 0, ``blocks_i`` gives
    ``i + 1``, no such element gives ``num_layers + 1``."""
    for name in map(_entry_name, path):
        if name in _VIT_EMBEDDING_NAMES:
            return 0
        match = _VIT_BLOCK_NAME.fullmatch(name)
        if match:
            return int(match.group(1)) + 1
    return num_layers + 1


def layerwise_lr_scales(params: Any, decay: float, num_layers: int) -> Any:
    """Per-parameter learning-rate multipliers of layer-wise lr decay (MAE / BEiT / ELECTRA).

    A pytree shaped like ``params`` (any nesting that contains a jaxssl ``VisionTransformer``)
    whose leaves are Python floats, by MAE's ``util/lr_decay.py`` (``param_groups_lrd``):

        layer id  = 0           for cls_token, pos_embed, patch_embed/*
                  = i + 1       for blocks_i/*
                  = L + 1       for everything else (final norm, fc_norm, head, ...)
        scale     = decay ** (L + 1 - layer id)

    with ``L = num_layers`` the number of transformer blocks (MAE's ``num_layers`` is
    ``len(model.blocks) + 1 = L + 1``). The head gets scale 1, the last block ``decay``, the
    embeddings ``decay ** (L + 1)``. MAE multiplies each parameter group's lr by its scale
    (``lr * lr_scale`` in ``util/lr_sched.py``), which also scales AdamW's decoupled weight
    decay; ``scale_by_tree(scales)`` chained after ``optax.adamw`` does the same.

    Raises ValueError if ``params`` has no ``blocks_i`` or a block index ``>= num_layers``.
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer-wise lr decay={decay} must be in (0, 1] (MAE ViT-B: 0.65, "
                         f"ViT-L: 0.75)")
    blocks = set()
    for path, _ in jax.tree_util.tree_leaves_with_path(params):
        for entry in path:
            match = _VIT_BLOCK_NAME.fullmatch(_entry_name(entry))
            if match:
                blocks.add(int(match.group(1)))
    if not blocks:
        raise ValueError(f"layerwise_lr_scales found no 'blocks_<i>' parameters (num_layers="
                         f"{num_layers}); pass the params of a model that contains a jaxssl "
                         f"VisionTransformer")
    if max(blocks) >= num_layers:
        raise ValueError(f"layerwise_lr_scales: params contain blocks_{max(blocks)} but "
                         f"num_layers={num_layers}; pass num_layers = the ViT depth")
    ids = jax.tree_util.tree_map_with_path(lambda path, _: _vit_layer_id(path, num_layers),
                                           params)
    return jax.tree.map(lambda i: float(decay) ** (num_layers + 1 - i), ids)


class ScaleByTreeState(NamedTuple):
    """``scale_by_tree`` keeps no state."""


def scale_by_tree(scales: Any) -> optax.GradientTransformation:
    """Multiply each update leaf by the matching leaf of ``scales`` (a pytree shaped like the
    params, e.g. ``layerwise_lr_scales``). Chain it after the optimizer:
    ``optax.chain(optax.adamw(lr, ...), scale_by_tree(scales))`` gives each leaf the learning
    rate ``lr * scale`` (and ``lr * scale * wd`` decoupled weight decay), as torch parameter
    groups with ``lr = lr * lr_scale`` do."""

    def init_fn(params):
        del params
        return ScaleByTreeState()

    def update_fn(updates, state, params=None):
        del params
        scaled = jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales)
        return scaled, state

    return optax.GradientTransformation(init_fn, update_fn)
