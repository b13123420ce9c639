"""Linear evaluation protocol on FROZEN features: multinomial logistic regression in JAX.

The features are extracted once (:func:`jaxssl.evaluators.features.extract_split`) and
only these arrays reach this module, so the backbone *cannot* be updated by the probe. This
guards against a known trap of SSL codebases: a "linear probe" whose backbone silently keeps
training (inflated numbers). The price is that the papers' train-time crop+flip augmentation
of the probe's inputs is not applied (features of the eval view are used for every epoch).

The classifier is one ``flax.linen.Dense(num_classes)`` layer, ``logits = x W + b``, trained
on the softmax cross-entropy ``mean_i -log softmax(x_i W + b)_{y_i}``. Protocols:

``'simclr'`` (google-research/simclr, linear eval, README command):
    Nesterov momentum 0.9, LR = 0.1 x B/256, cosine decay to 0 without warmup, B = 4096
    (capped at N), 90 epochs, zero-initialised classifier, weight decay 0 (1e-6 for
    ImageNet, as SimCLR's README linear eval) added as ``wd * ||theta||^2 / 2`` to the loss over kernel and bias
    (SimCLR's ``add_weight_decay`` for the momentum optimizer), last partial batch dropped
    (``drop_remainder=True``).
``'moco'`` (facebookresearch/moco ``main_lincls.py``):
    SGD momentum 0.9, LR 30, B = 256, 100 epochs, LR x 0.1 at epochs 60 and 80 (at 60% and 80%
    of the epochs when ``epochs`` is overridden), no weight decay, ``fc`` initialised
    N(0, 0.01^2) with zero bias, every example once per epoch (last batch smaller).
``'lbfgs'`` / ``'full-batch'``:
    the converged optimum of ``mean_i CE_i + (lambda / 2) ||W||^2`` (bias not penalised) by
    full-batch L-BFGS (``optax.lbfgs``, zoom line search). ``lambda`` defaults to ``1 / N``,
    which is exactly scikit-learn's ``LogisticRegression(C=1.0)`` objective
    ``C sum_i CE_i + ||W||^2 / 2`` divided by ``C N``. For small data (digits, few-label
    subsets), where a converged optimum is the fairest comparison between representations.

Feature standardisation ``(x - mean) / std`` with statistics of the *training* features only
(std 0 -> 1, as sklearn's StandardScaler) is on by default for ``'lbfgs'`` and off for the
paper presets, which train on raw backbone features.

Everything is deterministic given ``seed``: the epoch permutations are keyed by
``jaxssl.rng.step_key(seed, "linear_probe_data", epoch)`` and the 'moco' init by
``jaxssl.rng.root_key(seed, "linear_probe_init")``.
"""
from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl import rng


@dataclasses.dataclass(frozen=True)
class ProbeProtocol:
    """All hyperparameters of one linear evaluation protocol (see the module docstring)."""
    name: str
    optimizer: str                 # 'sgd' (mini-batch) | 'lbfgs' (full batch)
    learning_rate: float = 0.0     # base LR; the peak LR is base x B/256 when lr_scaling='linear'
    lr_scaling: str = "none"       # 'linear' | 'none'
    batch_size: int = 0            # capped at the number of training examples
    epochs: int = 0
    schedule: str = "constant"     # 'cosine' | 'step' | 'constant'
    step_epoch_fractions: tuple[float, ...] = ()  # 'step': LR x step_factor at these epochs/epochs
    step_factor: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float | None = 0.0  # lambda of (lambda/2)||theta||^2; None: 1/N (sklearn C=1)
    decay_bias: bool = True
    init_std: float = 0.0          # 0: zero-initialised kernel; else N(0, init_std^2)
    standardize: bool = False
    drop_last: bool = False
    max_iter: int = 1000           # 'lbfgs': iteration cap
    tol: float = 1e-5              # 'lbfgs': stop when ||grad||_2 < tol


PROTOCOLS: dict[str, ProbeProtocol] = {
    "simclr": ProbeProtocol(
        name="simclr", optimizer="sgd", learning_rate=0.1, lr_scaling="linear", batch_size=4096,
        epochs=90, schedule="cosine", momentum=0.9, nesterov=True, weight_decay=0.0,
        decay_bias=True, init_std=0.0, standardize=False, drop_last=True),
    "moco": ProbeProtocol(
        name="moco", optimizer="sgd", learning_rate=30.0, lr_scaling="none", batch_size=256,
        epochs=100, schedule="step", step_epoch_fractions=(0.6, 0.8), step_factor=0.1,
        momentum=0.9, nesterov=False, weight_decay=0.0, decay_bias=True, init_std=0.01,
        standardize=False, drop_last=False),
    "lbfgs": ProbeProtocol(
        name="lbfgs", optimizer="lbfgs", weight_decay=None, decay_bias=False, init_std=0.0,
        standardize=True),
}
PROTOCOLS["full-batch"] = dataclasses.replace(PROTOCOLS["lbfgs"], name="full-batch")

_SGD_ONLY = ("epochs", "batch_size", "learning_rate")
_LBFGS_ONLY = ("max_iter", "tol")


def resolve_protocol(protocol: str = "simclr", **overrides) -> ProbeProtocol:
    """The preset ``protocol`` with ``overrides`` applied (a value of ``None`` keeps the preset).

    Overridable: ``epochs``, ``batch_size``, ``learning_rate`` (the *base* LR; the preset's
    scaling rule still applies, e.g. x B/256 for 'simclr'), ``weight_decay``, ``standardize``
    (SGD presets and 'lbfgs'), ``max_iter``, ``tol`` ('lbfgs' only).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"linear probe protocol={protocol!r} is unknown; "
                         f"use one of {sorted(PROTOCOLS)}")
    preset = PROTOCOLS[protocol]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    allowed = {"weight_decay", "standardize"}
    allowed |= set(_SGD_ONLY) if preset.optimizer == "sgd" else set(_LBFGS_ONLY)
    for key in overrides:
        if key not in allowed:
            raise ValueError(f"linear probe option {key}={overrides[key]!r} does not apply to "
                             f"protocol={protocol!r}; options there: {sorted(allowed)}")
    proto = dataclasses.replace(preset, **overrides)
    for key in ("epochs", "batch_size", "max_iter"):
        if key in overrides and getattr(proto, key) <= 0:
            raise ValueError(f"linear probe {key}={getattr(proto, key)!r} must be a positive integer")
    if "learning_rate" in overrides and proto.learning_rate <= 0:
        raise ValueError(f"linear probe learning_rate={proto.learning_rate!r} must be > 0")
    if proto.weight_decay is not None and proto.weight_decay < 0:
        raise ValueError(f"linear probe weight_decay={proto.weight_decay!r} must be >= 0")
    return proto


def effective_batch_size(proto: ProbeProtocol, num_examples: int) -> int:
    """The preset batch capped at the training-set size."""
    return max(1, min(proto.batch_size, num_examples))


def steps_per_epoch(proto: ProbeProtocol, num_examples: int) -> int:
    """``N // B`` with ``drop_last`` (SimCLR), else ``ceil(N / B)`` (PyTorch DataLoader)."""
    batch = effective_batch_size(proto, num_examples)
    return num_examples // batch if proto.drop_last else -(-num_examples // batch)


def peak_learning_rate(proto: ProbeProtocol, num_examples: int) -> float:
    """Base LR, times B/256 for ``lr_scaling='linear'`` (SimCLR: 0.1 x B/256)."""
    if proto.lr_scaling == "linear":
        return proto.learning_rate * effective_batch_size(proto, num_examples) / 256.0
    return proto.learning_rate


def learning_rate_schedule(proto: ProbeProtocol, num_examples: int) -> optax.Schedule:
    """LR as a function of the SGD step (0-based). 'step' decays at whole epochs, as in MoCo:
    ``lr(epoch) = lr0 x 0.1^(#milestones <= epoch)`` with milestones ``round(f x epochs)``."""
    peak = peak_learning_rate(proto, num_examples)
    spe = steps_per_epoch(proto, num_examples)
    total = spe * proto.epochs
    if proto.schedule == "cosine":
        return optax.cosine_decay_schedule(peak, decay_steps=total)
    if proto.schedule == "step":
        boundaries = {}
        for frac in proto.step_epoch_fractions:
            step = int(round(frac * proto.epochs)) * spe
            boundaries[step] = boundaries.get(step, 1.0) * proto.step_factor
        return optax.piecewise_constant_schedule(peak, boundaries)
    if proto.schedule == "constant":
        return optax.constant_schedule(peak)
    raise ValueError(f"linear probe schedule={proto.schedule!r}; use 'cosine', 'step' or 'constant'")


@dataclasses.dataclass(frozen=True)
class LinearProbe:
    """A trained probe: ``logits = ((x - mean) / std) W + b``."""
    params: dict
    mean: np.ndarray   # [D] float32 (zeros when not standardising)
    std: np.ndarray    # [D] float32 (ones when not standardising)
    num_classes: int

    def logits(self, feats: np.ndarray) -> np.ndarray:
        """``[N, num_classes]`` float32 logits of features ``[N, D]``."""
        x = (np.asarray(feats, np.float32) - self.mean) / self.std
        return np.asarray(_classifier(self.num_classes).apply({"params": self.params}, jnp.asarray(x)))

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """``[N]`` int32 predicted classes."""
        return np.argmax(self.logits(feats), axis=-1).astype(np.int32)


def _classifier(num_classes: int, init_std: float = 0.0) -> nn.Dense:
    kernel_init = nn.initializers.zeros if init_std == 0 else nn.initializers.normal(init_std)
    return nn.Dense(num_classes, kernel_init=kernel_init, bias_init=nn.initializers.zeros,
                    precision=jax.lax.Precision.HIGHEST)


def _l2_penalty(params, weight_decay, decay_bias: bool):
    total = jnp.sum(jnp.square(params["kernel"]))
    if decay_bias:
        total = total + jnp.sum(jnp.square(params["bias"]))
    return 0.5 * weight_decay * total


def fit_linear_probe(train_feats: np.ndarray, train_labels: np.ndarray, num_classes: int,
                     protocol: str = "simclr", seed: int = 0, **overrides) -> LinearProbe:
    """Train the probe on frozen ``train_feats [N, D]`` and integer ``train_labels [N]``.

    ``overrides`` are those of :func:`resolve_protocol`.
    """
    proto = resolve_protocol(protocol, **overrides)
    x = np.asarray(train_feats, np.float32)
    y = np.asarray(train_labels)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"linear probe: train_feats {x.shape} must be [N, D] with N > 0 and "
                         f"train_labels {y.shape} must be [N]")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"linear probe: labels span [{y.min()}, {y.max()}] but "
                         f"num_classes={num_classes}; labels must be in [0, num_classes)")
    if proto.standardize:
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
    else:
        mean = np.zeros(x.shape[1], np.float32)
        std = np.ones(x.shape[1], np.float32)
    x = (x - mean) / std
    params = _classifier(num_classes, proto.init_std).init(
        rng.root_key(seed, "linear_probe_init"), jnp.zeros((1, x.shape[1])))["params"]
    x, y = jnp.asarray(x), jnp.asarray(y, jnp.int32)
    if proto.optimizer == "lbfgs":
        weight_decay = 1.0 / x.shape[0] if proto.weight_decay is None else proto.weight_decay
        params = _lbfgs_solve(params, x, y, jnp.float32(weight_decay), proto=proto,
                              num_classes=num_classes)
    else:
        opt_state = _sgd_optimizer(proto, x.shape[0]).init(params)
        for epoch in range(proto.epochs):
            params, opt_state = _sgd_epoch(params, opt_state, x, y, jnp.int32(epoch),
                                           jnp.int32(seed), proto=proto, num_classes=num_classes)
    return LinearProbe(params=jax.device_get(params), mean=mean.astype(np.float32), std=std,
                       num_classes=num_classes)


def _sgd_optimizer(proto: ProbeProtocol, num_examples: int) -> optax.GradientTransformation:
    """Coupled weight decay (gradient + wd * theta, as SimCLR's L2 loss term and torch SGD),
    then SGD with (Nesterov) momentum on the protocol's LR schedule."""
    return optax.chain(
        optax.add_decayed_weights(proto.weight_decay or 0.0,
                                  mask={"kernel": True, "bias": proto.decay_bias}),
        optax.sgd(learning_rate_schedule(proto, num_examples), momentum=proto.momentum or None,
                  nesterov=proto.nesterov))


@functools.partial(jax.jit, static_argnames=("proto", "num_classes"))
def _sgd_epoch(params, opt_state, x_NxD, y_N, epoch, seed, *, proto: ProbeProtocol,
               num_classes: int):
    """One shuffled epoch of mini-batch SGD as a ``lax.scan`` over its steps.

    Compiled once per (protocol, shapes): the data, epoch and seed are traced arguments.
    """
    n = x_NxD.shape[0]
    batch = effective_batch_size(proto, n)
    spe = steps_per_epoch(proto, n)
    model = _classifier(num_classes)
    tx = _sgd_optimizer(proto, n)

    def batch_loss(p, idx_B, weight_B):
        logits = model.apply({"params": p}, x_NxD[idx_B])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y_N[idx_B])
        return jnp.sum(ce * weight_B) / jnp.sum(weight_B)

    perm = jax.random.permutation(rng.step_key(seed, "linear_probe_data", epoch), n)
    padded = spe * batch
    if padded <= n:  # drop_last: the first spe * B examples of the permutation
        idx, weight = perm[:padded], jnp.ones((padded,), jnp.float32)
    else:  # the last batch is smaller: pad with weight-0 rows
        idx = jnp.concatenate([perm, jnp.zeros((padded - n,), perm.dtype)])
        weight = jnp.concatenate([jnp.ones((n,)), jnp.zeros((padded - n,))]).astype(jnp.float32)

    def step(carry, inputs):
        p, state = carry
        grads = jax.grad(batch_loss)(p, *inputs)
        updates, state = tx.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state),
                                          (idx.reshape(spe, batch), weight.reshape(spe, batch)))
    return params, opt_state


@functools.partial(jax.jit, static_argnames=("proto", "num_classes"))
def _lbfgs_solve(params, x_NxD, y_N, weight_decay, *, proto: ProbeProtocol, num_classes: int):
    """Full-batch L-BFGS on ``mean CE + (weight_decay / 2) ||W||^2`` until ``||grad|| < tol``
    or ``max_iter`` iterations (deterministic: zero init, no sampling)."""
    model = _classifier(num_classes)

    def objective(p):
        logits = model.apply({"params": p}, x_NxD)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y_N).mean()
        return ce + _l2_penalty(p, weight_decay, proto.decay_bias)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def body(carry):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(p, updates), state

    def keep_going(carry):
        _, state = carry
        count = optax.tree.get(state, "count")
        grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
        return (count == 0) | ((count < proto.max_iter) & (grad_norm >= proto.tol))

    params, _ = jax.lax.while_loop(keep_going, body, (params, opt.init(params)))
    return params


def linear_probe_accuracy(train_feats: np.ndarray, train_labels: np.ndarray,
                          test_feats: np.ndarray, test_labels: np.ndarray, num_classes: int,
                          protocol: str = "simclr", seed: int = 0, **overrides) -> float:
    """Top-1 test accuracy (python float in [0, 1]) of a probe trained on frozen features.

    Args:
      train_feats, test_feats: ``[N, D]`` float features from the frozen backbone.
      train_labels, test_labels: ``[N]`` integer labels in ``[0, num_classes)``.
      protocol: 'simclr' | 'moco' | 'lbfgs' | 'full-batch' (module docstring).
      seed: seeds the epoch permutations and the 'moco' init.
      **overrides: ``epochs``, ``batch_size``, ``learning_rate``, ``weight_decay``,
        ``standardize``, ``max_iter``, ``tol`` (see :func:`resolve_protocol`).
    """
    test_labels = np.asarray(test_labels)
    if test_labels.shape != (np.shape(test_feats)[0],) or test_labels.size == 0:
        raise ValueError(f"linear probe: test_labels {test_labels.shape} must be [N_test] with "
                         f"N_test = {np.shape(test_feats)[0]} > 0")
    probe = fit_linear_probe(train_feats, train_labels, num_classes, protocol, seed, **overrides)
    return float(np.mean(probe.predict(test_feats) == test_labels))
