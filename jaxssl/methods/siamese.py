"""What BYOL, SimSiam, Barlow Twins and VICReg share: two views through one network.

Each view goes through ``backbone -> projector [-> predictor]`` in its own call (BatchNorm
statistics per view, over the global batch: the references call the network once per view
under SyncBN / cross-replica BN). An optional EMA teacher (BYOL) runs ``backbone ->
projector`` on both views. The subclass supplies the heads and :meth:`Siamese.objective`,
a pure function of the per-view outputs.

Views: ``view1`` draws with ``config.augment``, ``view2`` with ``config.augment`` plus the
method section's ``view2`` overrides (BYOL's asymmetric blur 1.0 / 0.1 and solarize 0 / 0.2).
Config: :func:`siamese_config` adds the method section; ``config.teacher`` (BYOL) holds the
EMA momentum schedule (:class:`jaxssl.methods.momentum.EmaTeacher`).
"""
from __future__ import annotations

import abc

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import config as config_lib
from jaxssl import losses
from jaxssl.augment import views as views_lib
from jaxssl.methods import momentum as momentum_lib
from jaxssl.methods import online_probe
from jaxssl.methods.image import ImageMethod
from jaxssl.models import registry


def siamese_config(method: str, section: dict, teacher: bool = False) -> ml_collections.ConfigDict:
    """``base_config()`` with ``method``, a ``config.<method>`` section of ``section``'s fields
    plus ``view2`` (augment overrides of the second view), and ``config.teacher`` if used."""
    c = config_lib.base_config()
    c.method = method
    c[method] = ml_collections.ConfigDict(dict(section, online_probe=False))
    c[method].view2 = ml_collections.ConfigDict()
    if teacher:
        c.teacher = momentum_lib.teacher_config()
    return c


class TwoBranch(nn.Module):
    """``backbone -> projector [-> predictor]``: images ``[B, S, S, C]`` -> ``(z, p)``.

    ``p`` is the predictor's output, or ``z`` when there is no predictor. Parameters are
    ``{'backbone', 'projector'[, 'predictor']}``, so a teacher without predictor shares names.
    """
    backbone: nn.Module
    projector: nn.Module
    predictor: nn.Module | None = None

    def __call__(self, x, train: bool, with_features: bool = False):
        h = self.backbone(x, train=train)
        z = self.projector(h, train=train)
        p = self.predictor(z, train=train) if self.predictor is not None else z
        return (z, p, h) if with_features else (z, p)

    def features(self, x):
        return self.backbone(x, train=False)


def apply_train(module: nn.Module, params, batch_stats, x, **kwargs):
    """``module(x, train=True)`` -> ``(output, new batch_stats)`` (empty stats when no BN)."""
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    if not batch_stats:
        return module.apply(variables, x, train=True, **kwargs), batch_stats
    out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
    return out, updates["batch_stats"]


def embedding_std(z: jax.Array) -> jax.Array:
    """Mean per-dimension std of the L2-normalised embeddings times sqrt(d) (collapse
    monitor: ~1 for spread embeddings, 0 for collapsed ones; Chen & He 2021, Fig. 2)."""
    zn = losses.l2_normalize(z.astype(jnp.float32))
    return jnp.mean(jnp.std(zn, axis=0)) * jnp.sqrt(z.shape[-1])


class Siamese(ImageMethod):
    """Two views, one online network, an optional EMA teacher, a pure objective."""

    #: the config section of the method (``config.byol``, ``config.simsiam``, ...)
    section: str = ""
    #: whether the method keeps an EMA teacher of backbone + projector (``config.teacher``)
    uses_teacher: bool = False

    @classmethod
    def view_spec(cls, config) -> views_lib.ViewSpec:
        size = int(config.data.image_size)
        sec = config[cls.section]
        return views_lib.ViewSpec((
            views_lib.group_from_config("view1", 1, config.augment, size),
            views_lib.group_from_config("view2", 1, config.augment, size, sec.view2)))

    @classmethod
    def batch_keys(cls, config) -> tuple[str, ...]:
        """The batch entries the loss reads: ``label`` too with the online probe."""
        probe = cls.section in config and config[cls.section].online_probe
        return ("image", "label") if probe else ("image",)

    @classmethod
    def validate_config(cls, config) -> None:
        super().validate_config(config)
        if cls.section not in config:
            raise ValueError(f"config.method={config.method!r} needs a config.{cls.section} "
                             f"section; start from jaxssl.methods.{cls.__module__.split('.')[-1]}"
                             f".{cls.section}_config() (see configs/{cls.section}_digits.py)")
        if cls.uses_teacher:
            if "teacher" not in config:
                raise ValueError(f"config.method={config.method!r} needs a config.teacher section "
                                 "(jaxssl.methods.momentum.teacher_config())")
            t = config.teacher
            momentum_lib.EmaTeacher.from_config(t, 1)  # raises naming the teacher.* field
        cls.view_spec(config)  # raises naming the view group

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        self.sec = config[self.section]
        backbone = registry.build_backbone(config.model)
        self.online = TwoBranch(backbone, self.make_projector(), self.make_predictor())
        self.target = TwoBranch(backbone, self.make_projector(), None)
        self.teacher = (momentum_lib.EmaTeacher.from_config(config.teacher, self.total_steps)
                        if self.uses_teacher else None)
        self.probe = bool(self.sec.online_probe)

    # ----- what a subclass supplies -------------------------------------------------------
    @abc.abstractmethod
    def make_projector(self) -> nn.Module:
        """The projector (``[B, D] -> [B, d]``)."""

    def make_predictor(self) -> nn.Module | None:
        """The online predictor, or None (Barlow Twins, VICReg)."""
        return None

    @abc.abstractmethod
    def objective(self, online: list, targets: list) -> jax.Array:
        """The loss from per-view outputs: ``online[v] = (z_v, p_v)`` float32 ``[B, d]`` of the
        online network; ``targets[v]`` the teacher's ``z_v`` (no gradient), or None."""

    # ----- the Method contract ------------------------------------------------------------
    def items_per_step(self) -> int:
        return int(self.config.train.batch_size)

    def dtype(self):
        return registry.compute_dtype(self.config.model)

    def init(self, key):
        """``params``: the online network; ``model_state``: its BN statistics and, with a
        teacher, ``teacher = {params, batch_stats}`` (a copy of backbone + projector)."""
        variables = self.online.init(key, self.dummy_input(), train=True)
        params, stats = variables["params"], variables.get("batch_stats", {})
        if self.probe:
            feats = jax.eval_shape(lambda: self.online.apply(variables, self.dummy_input(),
                                                             method=TwoBranch.features))
            params = {**params, "online_probe": online_probe.init(
                online_probe.num_classes_of(self.data), feats.shape[-1])}
        state = {"batch_stats": stats}
        if self.uses_teacher:
            state["teacher"] = momentum_lib.EmaTeacher.init_state(
                params, stats, keys=("backbone", "projector"))
        return params, state

    def loss(self, params, model_state, batch, step):
        views = self.make_views(batch, step)
        stats = model_state["batch_stats"]
        online, targets = [], []
        teacher = model_state.get("teacher")
        t_params = momentum_lib.EmaTeacher.read(teacher["params"]) if teacher else None
        t_stats = teacher["batch_stats"] if teacher else None
        net_params = {k: v for k, v in params.items() if k != "online_probe"}
        features = None
        for name in ("view1", "view2"):  # one call per view: per-view BN statistics
            x = views[name][0]
            (z, p, h), stats = apply_train(self.online, net_params, stats, x, with_features=True)
            features = h if features is None else features
            online.append((z.astype(jnp.float32), p.astype(jnp.float32)))
            if teacher is not None:
                (zt, _), t_stats = apply_train(self.target, t_params, t_stats, x)
                targets.append(jax.lax.stop_gradient(zt.astype(jnp.float32)))
            else:
                targets.append(None)
        loss = self.objective(online, targets)
        new_state = {"batch_stats": stats}
        metrics = {"embedding_std": embedding_std(online[0][0])}
        if self.probe:
            probe_loss, probe_acc = online_probe.loss_and_accuracy(
                params["online_probe"], features, batch["label"])
            loss = loss + probe_loss
            metrics.update(online_probe_loss=probe_loss, online_probe_acc=probe_acc)
        if teacher is not None:
            new_state["teacher"] = {"params": teacher["params"],
                                    "batch_stats": jax.lax.stop_gradient(t_stats)}
            metrics["momentum"] = self.teacher.momentum_at(step)
        return loss, (new_state, metrics)

    def after_update(self, state):
        if self.teacher is None:
            return state
        online = {k: state.params[k] for k in ("backbone", "projector")}
        return self.teacher.after_update(state, online)

    def backbone_features(self, params, model_state, images):
        stats = model_state["batch_stats"]
        net = {k: v for k, v in params.items() if k != "online_probe"}
        variables = {"params": net, **({"batch_stats": stats} if stats else {})}
        return self.online.apply(variables, self.normalize(images), method=TwoBranch.features)


__all__ = ["Siamese", "TwoBranch", "siamese_config", "apply_train", "embedding_std"]
