"""Supervised classifiers on a pretrained backbone: the papers' linear evaluation and fine-tuning.

Both run inside the same jitted, sharded, resumable and preemptible trainer as pretraining;
the pretrained backbone comes from ``train.init_from`` (a pretraining workdir or checkpoint).

* :class:`LinearEval` (``config.method='linear_eval'``): the backbone is frozen -- run in
  eval mode (BatchNorm with its running statistics), behind ``stop_gradient``, and listed in
  ``optim.frozen_params`` so the optimizer neither updates nor decays it (it stays bit
  for bit what was loaded) -- and a classifier is trained on *augmented* views (random
  resized crop + flip), as every reference's ``main_lincls.py`` / ``--train_mode=finetune
  --fine_tune_after_block=4`` does.
* :class:`FineTune` (``config.method='finetune'``): the whole network trains (BN in train
  mode over the global batch), optionally from the first projection-head layers
  (SimCLR's ``--ft_proj_selector``), with MAE's recipe options (layer-wise lr decay,
  drop path, mixup / cutmix, label smoothing, RandAugment, random erasing) where set.

Model: :class:`jaxssl.models.classifier_head.ImageClassifier`,
``logits = classifier(probe_bn(head_prefix(backbone(x))))`` with ``classifier.from_head_layers``
pretrained projection layers, ``classifier.head`` and ``classifier.head_init``. Data: the
trainer's ``image_labelled`` builder (:mod:`jaxssl.data.pipeline`: the labelled train split,
``classifier.labels_per_class`` per class when set). Evaluation: the ``classification``
evaluator on :meth:`_Classifier.logits`.

Loss: softmax cross-entropy with the integer labels (label smoothing ``eps``:
``(1 - eps) onehot + eps / K``), or with mixup / cutmix soft targets.

The backbone's parameter names are those of the pretraining method (``classifier.
pretrain_method`` names it; :data:`BACKBONE_PATHS` says where its backbone sits in that
method's checkpoint), so ``init_from`` loads the backbone and nothing else, and refuses a
checkpoint whose backbone is missing or shaped differently (naming the first mismatch).
"""
from __future__ import annotations

import copy
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import config as config_lib
from jaxssl import checkpoint as checkpoint_lib
from jaxssl import rng
from jaxssl.augment import image as aug
from jaxssl.data import normalize as normalize_lib
from jaxssl.methods.image import ImageMethod
from jaxssl.models import registry
from jaxssl.models.classifier_head import HeadPrefix, ImageClassifier

#: pretraining method -> (path of its backbone in the checkpoint's params, in its batch_stats,
#: path of its projection head in params / batch_stats)
BACKBONE_PATHS = {
    "simclr": (("backbone",), ("backbone",), ("head",)),
    "moco_v2": (("backbone",), ("backbone",), ("projector",)),
    "moco_v3": (("encoder", "backbone"), ("encoder", "backbone"), ("encoder", "projector")),
    "mae": (("encoder",), ("encoder",), None),
    "byol": (("backbone",), ("backbone",), ("projector",)),
    "simsiam": (("backbone",), ("backbone",), ("projector",)),
    "barlow": (("backbone",), ("backbone",), ("projector",)),
    "vicreg": (("backbone",), ("backbone",), ("projector",)),
    "dino": (("backbone",), ("backbone",), None),
    "ibot": (("backbone",), ("backbone",), None),      # its ViT's mask_token is not read
    "dinov2": (("backbone",), ("backbone",), None),
    # I-JEPA probes the EMA target encoder (CHECKPOINT_ROOTS): its params are the ViT's
    "ijepa": ((), (), None),
    "": ((), (), None),  # no pretraining: a supervised run from scratch
}
#: pretraining method -> where the evaluated network's ``params`` / ``batch_stats`` sit in its
#: checkpoint, when not at the top (DINO evaluates its EMA teacher: eval_linear.py and
#: eval_knn.py ``--checkpoint_key teacher``); BACKBONE_PATHS are relative to it
CHECKPOINT_ROOTS = {method: ("model_state", "teacher")
                    for method in ("dino", "ibot", "dinov2", "ijepa")}
HEADS = ("linear", "bn_linear")
#: backbone modules a pretraining checkpoint does not have (kept at their initialisation)
NEW_LEAVES = ("fc_norm",)
HEAD_INITS = ("zeros", "normal", "trunc_normal")


def section_defaults() -> ml_collections.ConfigDict:
    """The ``classifier`` config section (see the module docstring); :func:`classifier_config`
    and ``jaxssl.methods.text_classifier.text_classifier_config`` attach it."""
    return ml_collections.ConfigDict(dict(
        pretrain_method="",       # the method that wrote train.init_from ('' : none)
        head="linear",            # 'linear' | 'bn_linear' (MAE: BN without affine first)
        head_init="zeros",        # 'zeros' (SimCLR) | 'normal' (MoCo) | 'trunc_normal' (MAE)
        head_init_std=0.01,
        from_head_layers=0,       # SimCLR ft_proj_selector: keep this many projection layers
        labels_per_class=0,       # 0: every training label; n: a fixed n-per-class subset
        label_smoothing=0.0,
        drop_path_rate=0.0,       # ViT stochastic depth (MAE ViT-B fine-tuning: 0.1)
        mixup_alpha=0.0,          # timm Mixup (MAE fine-tuning: 0.8)
        cutmix_alpha=0.0,         # (MAE fine-tuning: 1.0)
        mixup_switch_prob=0.5,
        randaugment="",           # '' | 'rand-m9-mstd0.5-inc1' (MAE fine-tuning)
        random_erasing=0.0,       # probability (MAE fine-tuning: 0.25)
        layer_decay=0.0,          # 0: off; MAE ViT-B fine-tuning: 0.65
        n_last_blocks=1,          # ViT features: the [CLS] of the last n blocks, concatenated
        avgpool_patchtokens=False,  # ... and the mean of the patch tokens (DINO eval_linear.py)
        pixel_mean=(),            # an older name of data.normalize_mean / _std (jaxssl.data.normalize)
        pixel_std=(),
        baselines=(),             # 'random_init': the same recipe from random init;
                                  # 'majority_class': predict the commonest training label
    ))


def classifier_config(pretrain_config, method: str) -> ml_collections.ConfigDict:
    """A classifier config for a backbone pretrained with ``pretrain_config`` (unlocked).

    Keeps the pretraining ``seed``, ``data`` and ``model`` sections (so the backbone is built
    with the same names and shapes), sets ``method`` ('linear_eval' or 'finetune'), adds the
    ``classifier`` section and freezes the backbone for linear evaluation. The caller sets
    the protocol's optimizer, schedule, batch, epochs and augmentation. Evaluation is on
    (``eval.enabled``): the run ends by writing its top-1 to ``eval_results.json``.
    ``init_from`` must be set before the run (a pretraining run, or ``'random'``).
    """
    c = copy.deepcopy(pretrain_config)  # keeps the FieldReference links (data.crop_* -> augment.*)
    c.unlock()
    pretrain_method = c.method
    c.method = method
    c.model.freeze_patch_embed = False
    # The pretraining's input normalisation (jaxssl.data.normalize: data.normalize_*, or MAE's
    # and I-JEPA's older mae.pixel_* / ijepa.pixel_*), kept in data.normalize_*; ResNet presets
    # normalise inside the backbone (model.input_*), which is kept as is.
    mean, std, _ = normalize_lib.input_normalization(c)
    if pretrain_method == "mae":  # MAE's encoder: its sizes and pooling
        m = c.mae
        c.model.update(dict(pool=m.pool, posemb="sincos2d", vit_hidden_dim=m.encoder_hidden_dim,
                            vit_depth=m.encoder_depth, vit_num_heads=m.encoder_heads))
    for section in ("moco", "mae", "mlm", "ijepa"):
        if section in c:
            del c[section]
    # ``--config.init_from=PRETRAIN_WORKDIR``: one reference shared with train.init_from.
    init_from = ml_collections.FieldReference(c.train.init_from, field_type=str)
    c.init_from = init_from
    c.train.init_from = init_from
    c.classifier = section_defaults()
    c.classifier.pretrain_method = pretrain_method
    c.data.normalize_mean, c.data.normalize_std = mean, std
    c.optim.min_lr = 0.0
    c.optim.warmup_fraction = 0.0
    c.optim.lars_classic_momentum = True
    c.optim.frozen_params = ("backbone",) if method == "linear_eval" else ()
    c.optim.no_decay_names = ()
    c.optim.decay_all_params = False
    c.augment.update(dict(crop=True, crop_scale=(0.08, 1.0), jitter_prob=0.0,
                          grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    # A protocol run reports its top-1 (eval_results.json) whatever the pretraining preset
    # did about evaluation (the ImageNet pretraining presets turn it off).
    c.eval.update(dict(enabled=True, evaluators=("classification",), embedding_map=False,
                       baselines=()))
    c.loss.temperature = 1.0
    return c


def _get(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


class _Classifier(ImageMethod):
    """What linear evaluation and fine-tuning share."""

    frozen = False
    num_views = 1
    train_keys = ("image", "label")
    train_role = "train"
    default_evaluators = ("classification",)

    @classmethod
    def validate_config(cls, config) -> None:
        super().validate_config(config)
        from jaxssl.config import fail
        if "classifier" not in config:
            raise ValueError(f"config.method={config.method!r} needs a config.classifier section; "
                             "build the config with jaxssl.methods.classifier.classifier_config()")
        k = config.classifier
        missing = sorted(set(section_defaults()) - set(k))
        if missing:
            raise ValueError(f"config section classifier lacks {missing}; start it from "
                             "jaxssl.methods.classifier.section_defaults()")
        if k.pretrain_method not in BACKBONE_PATHS:
            fail("classifier.pretrain_method", k.pretrain_method,
                 f"use one of {sorted(BACKBONE_PATHS)}")
        if k.head not in HEADS:
            fail("classifier.head", k.head, f"use one of {HEADS}")
        if k.head_init not in HEAD_INITS:
            fail("classifier.head_init", k.head_init, f"use one of {HEAD_INITS}")
        if k.from_head_layers < 0 or (k.from_head_layers and
                                      BACKBONE_PATHS[k.pretrain_method][2] is None):
            fail("classifier.from_head_layers", k.from_head_layers,
                 "use 0, or a positive number of projection-head layers of a method that has a "
                 "projection head (simclr, moco_v2, moco_v3)")
        if k.labels_per_class < 0:
            fail("classifier.labels_per_class", k.labels_per_class,
                 "use 0 (every label) or a positive number of labels per class")
        if k.layer_decay and not config.model.backbone.startswith("vit"):
            fail("classifier.layer_decay", k.layer_decay,
                 "layer-wise lr decay is defined for ViT backbones; use 0 for ResNets")
        if (k.mixup_alpha > 0 or k.cutmix_alpha > 0) and int(config.train.batch_size) % 2:
            fail("train.batch_size", config.train.batch_size, "mixup / cutmix mix a batch with "
                 "its reverse and need an even batch")
        if k.randaugment:
            from jaxssl.augment.randaugment import parse_rand_augment
            try:
                parse_rand_augment(k.randaugment)
            except ValueError as err:
                fail("classifier.randaugment", k.randaugment, str(err))
        if int(k.n_last_blocks) < 1 or ((int(k.n_last_blocks) > 1 or k.avgpool_patchtokens)
                                        and not config.model.backbone.startswith("vit")):
            fail("classifier.n_last_blocks", (k.n_last_blocks, k.avgpool_patchtokens),
                 "use n_last_blocks >= 1; more than 1 block or avgpool_patchtokens need a ViT "
                 "backbone (DINO ViT-S: 4, False; ViT-B: 1, True)")
        if not 0.0 <= k.label_smoothing < 1.0:
            fail("classifier.label_smoothing", k.label_smoothing, "use a value in [0, 1) (MAE: 0.1)")
        if len(tuple(k.pixel_mean)) != len(tuple(k.pixel_std)):
            fail("classifier.pixel_mean", tuple(k.pixel_mean),
                 f"give as many values as classifier.pixel_std={tuple(k.pixel_std)}")
        for name in k.baselines:
            if name not in ("random_init", "majority_class"):
                fail("classifier.baselines", tuple(k.baselines),
                     "use some of ('random_init', 'majority_class')")
        if cls.frozen and "backbone" not in tuple(config.optim.frozen_params):
            fail("optim.frozen_params", tuple(config.optim.frozen_params),
                 "linear evaluation freezes the backbone: include 'backbone'")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        k = config.classifier
        self.num_classes = int(data.source.num_classes)
        backbone = registry.build_backbone(config.model)
        if float(k.drop_path_rate) > 0:
            if not hasattr(backbone, "drop_path_rate"):
                raise ValueError(f"config field classifier.drop_path_rate={k.drop_path_rate!r} "
                                 f"is invalid for model.backbone={config.model.backbone!r}: "
                                 "stochastic depth is a ViT option; use 0")
            backbone = backbone.clone(drop_path_rate=float(k.drop_path_rate))
        if int(k.n_last_blocks) > 1 or k.avgpool_patchtokens:
            from jaxssl.methods.dino import linear_features_vit
            backbone = linear_features_vit(backbone, int(k.n_last_blocks),
                                           bool(k.avgpool_patchtokens))
        self.vit_depth = getattr(backbone, "depth", 0)
        prefix = None
        if k.from_head_layers:
            m = config.model
            prefix = HeadPrefix(int(m.head_hidden_dim), int(k.from_head_layers),
                                use_bn=k.pretrain_method != "moco_v2",
                                use_bias=k.pretrain_method == "moco_v2")
        self.model = ImageClassifier(backbone=backbone, num_classes=self.num_classes,
                                     frozen=self.frozen, probe=k.head, head_init=k.head_init,
                                     head_init_std=float(k.head_init_std), head=prefix)

    # ----- model ------------------------------------------------------------------------
    def init(self, key):
        variables = self.model.init(key, self.dummy_input(), train=False)
        return variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def view(self, batch, step):
        """The step's augmented view ``[B, S, S, C]`` (random resized crop + flip, keyed by
        (seed, 'augment', step, example)) and, for fine-tuning, RandAugment and erasing."""
        images = batch["image"]
        if images.ndim == 5:  # host-cropped [B, 1, S, S, C]
            images = images[:, 0]
        step_key = rng.step_key(self.config.seed, "augment", step)
        key = jax.random.fold_in(step_key, 0)
        x = aug.augment_batch(rng.example_keys(key, images.shape[0]), images, self.view_cfg)
        k = self.config.classifier
        if k.randaugment:  # timm order: crop, flip, RandAugment, (normalise, erase)
            from jaxssl.augment.randaugment import rand_augment
            fill = (124, 116, 104) if self.channels == 3 else (0,)
            x = rand_augment(jax.random.fold_in(step_key, 1), x, k.randaugment, fill=fill)
        return x

    def erase(self, x, step):
        """timm RandomErasing (mode 'pixel') on the normalised view, when configured."""
        prob = float(self.config.classifier.random_erasing)
        if prob <= 0:
            return x
        from jaxssl.augment.erasing import random_erasing
        key = jax.random.fold_in(rng.step_key(self.config.seed, "augment", step), 2)
        return random_erasing(key, x, probability=prob, mode="pixel")

    def targets(self, labels, step):
        """``[B, K]`` soft targets: one-hot with label smoothing."""
        eps = float(self.config.classifier.label_smoothing)
        onehot = jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)
        return onehot * (1.0 - eps) + eps / self.num_classes

    def loss(self, params, model_state, batch, step):
        x = self.erase(self.normalize(self.view(batch, step)), step)
        targets = self.targets(batch["label"], step)
        x, targets = self.mix(x, targets, step)
        logits, updates = self.model.apply(
            {"params": params, **model_state}, x, train=True, mutable=list(model_state),
            rngs={"dropout": rng.step_key(self.config.seed, "dropout", step)})
        loss = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
        acc = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
        return loss, ({**model_state, **updates}, {"train_accuracy": acc})

    def mix(self, images, targets, step):
        """timm Mixup / CutMix of the batch with its reverse (fine-tuning recipes), whose soft
        targets (label-smoothed) replace ``targets``; identity when both alphas are 0."""
        k = self.config.classifier
        if not (k.mixup_alpha > 0 or k.cutmix_alpha > 0):
            return images, targets
        from jaxssl.augment.mixup import mixup_cutmix
        key = jax.random.fold_in(rng.step_key(self.config.seed, "augment", step), 3)
        labels = jnp.argmax(targets, axis=-1)
        return mixup_cutmix(key, images, labels, num_classes=self.num_classes,
                            mixup_alpha=float(k.mixup_alpha), cutmix_alpha=float(k.cutmix_alpha),
                            switch_prob=float(k.mixup_switch_prob),
                            label_smoothing=float(k.label_smoothing))

    def lr_scales(self):
        """Layer-wise lr decay multipliers (``classifier.layer_decay`` > 0, ViT), else None."""
        decay = float(self.config.classifier.layer_decay)
        if not decay:
            return None
        from jaxssl import optim
        params, _ = jax.eval_shape(self.init, jax.random.key(0))
        return optim.layerwise_lr_scales(params, decay, self.vit_depth)

    def logits(self, params, model_state, inputs):
        """Eval-mode logits ``[B, K]`` of eval-preprocessed float images ``[B, S, S, C]``."""
        return self.model.apply({"params": params, **model_state}, self.normalize(inputs),
                                train=False)

    def backbone_features(self, params, model_state, images):
        return self.model.apply({"params": params, **model_state}, self.normalize(images),
                                method=ImageClassifier.features)

    def chance_loss(self) -> float:
        return math.log(self.num_classes)

    def random_init_baseline(self) -> dict | None:
        """The same recipe from random initialisation when ``classifier.baselines`` lists
        ``random_init`` and this run starts from a pretrained backbone."""
        c = self.config
        if "random_init" not in tuple(c.classifier.baselines) or not config_lib.init_path(c):
            return None
        return {"train.init_from": config_lib.RANDOM_INIT, "classifier.baselines": (),
                "train.eval_every_steps": 0}

    # ----- loading the pretrained backbone ----------------------------------------------
    def init_from(self, path: str, state, mesh):
        """Load the pretrained backbone (and head prefix) from ``path``; everything else keeps
        its initialisation. Raises :class:`jaxssl.checkpoint.CheckpointError` naming the path
        and the first missing or mismatched leaf."""
        k = self.config.classifier
        stored, _ = checkpoint_lib.load_tree(path, mesh)
        p_path, s_path, head_path = BACKBONE_PATHS[k.pretrain_method]
        root = CHECKPOINT_ROOTS.get(k.pretrain_method, ())
        if root:  # e.g. DINO's teacher: model_state/teacher/{params, batch_stats}
            network = _get(stored, root) or {}
            stored_params, stored_stats = network.get("params", {}), network.get("batch_stats", {})
        else:
            stored_params = stored.get("params", {})
            stored_stats = stored.get("model_state", {}).get("batch_stats", {})
        pieces = [("params", ("backbone",), _get(stored_params, p_path), p_path),
                  ("batch_stats", ("backbone",), _get(stored_stats, s_path), s_path)]
        if k.from_head_layers:
            pieces += [("params", ("head",), _get(stored_params, head_path), head_path),
                       ("batch_stats", ("head",), _get(stored_stats, head_path), head_path)]
        params, model_state = state.params, dict(state.model_state)
        loaded = []
        for kind, ours, theirs, their_path in pieces:
            target = params if kind == "params" else model_state.get("batch_stats", {})
            mine = _get(target, ours)
            if mine is None or (isinstance(mine, dict) and not mine):
                continue  # e.g. a backbone without BatchNorm
            where = "/".join(root + (kind,) + tuple(their_path))
            if theirs is None:
                raise checkpoint_lib.CheckpointError(
                    f"train.init_from={path!r}: the checkpoint has no {where} (a "
                    f"classifier.pretrain_method={k.pretrain_method!r} backbone); check the "
                    "path and classifier.pretrain_method")
            new = checkpoint_lib.load_subtree(mine, theirs, path, where, may_be_new=NEW_LEAVES)
            if kind == "params":
                params = {**params, ours[0]: new}
            else:
                model_state["batch_stats"] = {**model_state["batch_stats"], ours[0]: new}
            loaded.append(where)
        if not loaded:
            raise checkpoint_lib.CheckpointError(
                f"train.init_from={path!r}: nothing to load into this classifier")
        return state.replace(params=params, model_state=model_state), loaded


class LinearEval(_Classifier):
    """Linear evaluation: a classifier on the frozen backbone (module docstring)."""
    data_kind = "image_labelled"
    frozen = True


class FineTune(_Classifier):
    """End-to-end fine-tuning of the backbone and a classifier (module docstring)."""
    data_kind = "image_labelled"
    frozen = False


__all__ = ["LinearEval", "FineTune", "ImageClassifier", "HeadPrefix", "section_defaults",
           "classifier_config", "BACKBONE_PATHS"]
