"""Config helpers: the base config every preset starts from, durations, and validation.

A preset in ``configs/`` calls :func:`base_config`, sets the paper's values, and returns the
config locked (``ml_collections`` raises on a misspelt key, in the file or on the command line).
:func:`validate` runs before any device work and names the field, the value and the fix.
"""
from __future__ import annotations

import importlib.util
import math
import os

import ml_collections



def base_config() -> ml_collections.ConfigDict:
    """All fields with neutral defaults. Presets override; unknown keys are refused once locked."""
    c = ml_collections.ConfigDict()
    c.method = "simclr"
    c.seed = 0

    c.data = ml_collections.ConfigDict(dict(
        name="digits",
        data_dir=ml_collections.FieldReference(None, field_type=str),
        image_size=32,            # side of the augmented views fed to the model
        pretrain_split=ml_collections.FieldReference(None, field_type=str),  # None: dataset default
        train_split=ml_collections.FieldReference(None, field_type=str),
        test_split=ml_collections.FieldReference(None, field_type=str),
        crop_scale=(0.08, 1.0),   # host-read sources crop on the host: = augment.crop_scale (a reference)
        crop_ratio=(3 / 4, 4 / 3),
        # True: hold the split on the device; False: read every batch on the host (the
        # ImageNet path); None: in memory exactly when the source holds its images in memory.
        in_memory=ml_collections.FieldReference(None, field_type=bool),
        # Host-read batches (data.in_memory=False, ImageNet) a background thread prepares
        # ahead of the running step (jaxssl.data.prefetch); 0 = off.
        prefetch=2,
        # Per-channel input normalisation (x - mean) / std of the views and of the evaluation
        # images, after augmentation (torchvision's Normalize); () = none, images stay in
        # [0, 1]. Applied by MoCo v3 (jaxssl.methods.moco.normalize_input); MAE has its own
        # mae.pixel_mean / mae.pixel_std. ImageNet: (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225).
        normalize_mean=(),
        normalize_std=(),
        # Host-read sources (ImageNet): decode threads of the crop reader (None: min(32, CPUs)).
        host_threads=ml_collections.FieldReference(None, field_type=int),
    ))

    # On-device view augmentation (jaxssl.augment.image.ViewConfig fields).
    c.augment = ml_collections.ConfigDict(dict(
        crop=True, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), resize_method="bicubic",
        resize_antialias=False,   # widen the resize kernel when downscaling (PIL / MoCo)
        flip_prob=0.5, jitter_prob=0.8, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
        brightness_mode="multiplicative", jitter_random_order=True, grayscale_prob=0.2,
        blur_prob=0.5, blur_sigma=(0.1, 2.0), blur_kernel_fraction=0.1,
        solarize_prob=0.0, solarize_threshold=0.5,
        blur_kernel="fraction",   # 'fraction' (SimCLR: odd of blur_kernel_fraction x side) | 'sigma' (PIL)
    ))
    # Host-cropped sources (ImageNet): the PIL resample of the crop, the same field as
    # augment.resize_method (a reference: setting either sets both).
    c.data.resize_method = c.augment.get_ref("resize_method")
    # One home for the crop geometry: the host crop of host-read sources is the view's crop
    # (data.crop_scale / crop_ratio are references to augment.crop_scale / crop_ratio).
    c.data.crop_scale = c.augment.get_ref("crop_scale")
    c.data.crop_ratio = c.augment.get_ref("crop_ratio")
    # Eval preprocessing: centre crop of this side fraction, then resize to data.image_size
    # (SimCLR: 0.875). The one home of the field: evaluators pass it to the host reader.
    c.eval_crop_fraction = 0.875

    c.model = ml_collections.ConfigDict(dict(
        backbone="resnet18",
        stem="imagenet",          # 'imagenet' (7x7/2 + max-pool) or 'cifar' (3x3/1, no pool)
        width_multiplier=1,
        patch_size=16,            # ViT backbones
        head="simclr_v2",         # 'simclr_v1' (2 layers) or 'simclr_v2' (3 layers, BN everywhere)
        head_hidden_dim=2048,
        head_output_dim=128,
        dtype="float32",          # compute dtype: 'float32' or 'bfloat16' (params stay float32)
        conv_batch_chunk=0,       # ResNet: > 0 runs convs on slices of this many images (CPU, 1 device)
        remat="none",             # rematerialise each block: 'none' | 'full' | 'dots' (models/remat.py)
        zero_init_residual=True,  # ResNet: last BN gamma of each block 0 (SimCLR, MoCo v3; not MoCo v2)
        cifar_stem_padding=1,     # ResNet 'cifar' stem conv padding: 1 (SimCLR), 2 (solo-learn)
        input_mean=(),            # ResNet input normalisation (x - mean) / std per channel; () = off
        input_std=(),
        # ViT backbones (jaxssl.models.vit.VisionTransformer):
        pool="cls",               # 'cls' (class token) | 'gap' (mean of the patch tokens)
        posemb="sincos2d",        # 'sincos2d' (fixed) | 'learned'
        sincos_layout="mae",      # sin-cos table: 'mae' (column first) | 'mocov3' (row first)
        freeze_patch_embed=False,  # MoCo v3: the patch projection is not trained (optim.frozen_params)
        vit_hidden_dim=0,         # > 0 replaces the named size's value (moco-v3 ViT-S: vit_num_heads=12)
        vit_depth=0,
        vit_num_heads=0,
        vit_layerscale_init=0.0,  # > 0: LayerScale on every block branch (DINOv2: 1e-5)
        vit_num_registers=0,      # register tokens after the class token (DINOv2 with registers: 4)
        vit_mlp_type="mlp",       # 'mlp' | 'swiglu' (DINOv2 ViT-g)
    ))

    c.loss = ml_collections.ConfigDict(dict(
        temperature=0.1,
        blockwise=False,          # chunked-logsumexp NT-Xent for very large global batches
        block_size=4096,
        scale=1.0,                # SimCLR optimises scale * nt_xent (2.0: the reference's mean(loss_a + loss_b))
    ))

    c.optim = ml_collections.ConfigDict(dict(
        name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-6, momentum=0.9,
        nesterov=False, trust_coefficient=1e-3, b1=0.9, b2=0.999, eps=1e-8,
        warmup_epochs=10.0, warmup_fraction=0.0, schedule="cosine",
        min_lr=0.0,               # 'cosine': the final learning rate (MAE fine-tuning: 1e-6)
        # 'step': lr *= step_factor at each boundary (MoCo's linear eval: (60, 80)); () = none.
        step_boundaries_epochs=(), step_factor=0.1, grad_clip_norm=0.0,
        # Weight-decay and update masks (jaxssl.optim): decay norms and biases too (MoCo's
        # PyTorch SGD / AdamW); names never decayed (timm: cls_token, pos_embed); names
        # neither updated nor decayed (MoCo v3 ViT: patch_embed; linear eval: backbone).
        decay_all_params=False, no_decay_names=(), frozen_params=(),
        lars_classic_momentum=True,  # LARS: lr inside the momentum buffer (SimCLR); False: MoCo v3
        # The schedule as a segment of a longer one (BERT's 128 -> 512 phases): > 0 builds the
        # warmup and decay over schedule_total_steps and starts this run at schedule_start_step
        # of it; 0 / 0: the schedule spans this run (jaxssl.optim.build_schedule).
        schedule_total_steps=0, schedule_start_step=0,
        # adamw: False drops Adam's bias correction, u = m / (sqrt(v) + eps) (google-research/bert
        # AdamWeightDecayOptimizer); True: optax.adamw.
        adam_bias_correction=True,
        weight_decay_end=-1.0,    # adamw: >= 0 decays weight_decay to this on a cosine (DINO)
        grad_clip_per_param=0.0,  # > 0: clip each parameter's gradient norm (DINO 3.0)
    ))

    c.train = ml_collections.ConfigDict(dict(
        batch_size=256,           # global batch (all devices, all processes)
        num_epochs=0.0,           # exactly one of num_epochs / num_steps is > 0
        num_steps=0,
        log_every_steps=50,
        checkpoint_every_steps=1000,
        max_checkpoints_to_keep=3,
        eval_every_steps=0,       # 0: evaluate only at the end
        # What a NaN/Inf loss or gradient does (docs/reliability.md): 'skip' (no update, counted),
        # 'abort' (exit code 3, last good checkpoint kept) or 'rollback' (restore the last
        # checkpoint, continue after the bad batch).
        nonfinite_policy="skip",
        restore_fallback=False,   # a damaged latest checkpoint: fall back to the previous one
        # Start a NEW run from another run's checkpoint (step folder, checkpoints folder or
        # workdir): loads params / model_state leaves that match by name and shape.
        init_from=ml_collections.FieldReference(None, field_type=str),
        debug_nan_at_step=-1,     # TEST HOOK: make the loss NaN at this step (-1: off)
    ))

    # Collapse monitor (jaxssl.monitor): warn when the loss stays at its chance value or the
    # embedding spread collapses.
    c.monitor = ml_collections.ConfigDict(dict(
        collapse_loss_rel_tol=0.01, collapse_patience=3, collapse_std_floor=0.05))

    c.eval = ml_collections.ConfigDict(dict(
        enabled=True,
        evaluators=(),            # names from jaxssl.evaluators.build; (): the method's defaults
        batch_size=512,
        knn_k=200, knn_temperature=0.1,
        few_labels_per_class=10, few_labels_seed=0,
        linear_protocol="lbfgs",  # 'lbfgs' (converged, small data) | 'simclr' | 'moco'
        linear_epochs=0, linear_batch_size=0, linear_lr=0.0, linear_weight_decay=-1.0,  # 0/-1: preset
        baselines=("random_init", "raw_pixels"),
        embedding_map=False,      # quickstart: 2-D map of test embeddings (needs matplotlib)
    ))

    c.mesh = ml_collections.ConfigDict(dict(num_devices=0))  # 0: all visible devices
    return c


def presets_dir() -> str:
    """The folder of preset files: ``$JAXSSL_CONFIGS``, else ``configs/`` of this checkout."""
    return os.environ.get("JAXSSL_CONFIGS") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_preset(name: str, arg: str | None = None, **overrides) -> ml_collections.ConfigDict:
    """The preset ``configs/NAME.py`` built with ``get_config(arg)``, with ``overrides``
    applied (dotted keys as ``--config.`` flags take them, given with ``__`` for ``.``:
    ``load_preset('simclr_digits', train__num_steps=3)``), and locked."""
    path = os.path.join(presets_dir(), f"{name}.py")
    if not os.path.isfile(path):
        raise ValueError(f"preset {name!r} not found: {path} does not exist; the presets are "
                         f"{sorted(f[:-3] for f in os.listdir(presets_dir()) if f.endswith('.py'))}")
    spec = importlib.util.spec_from_file_location(f"jaxssl_preset_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    with config.unlocked():
        for key, value in overrides.items():
            node = config
            *parents, leaf = key.split("__")
            for part in parents:
                node = node[part]
            node[leaf] = value
    return config.lock()


def parse_arg(arg: str | None, choices: dict, default: str) -> str:
    """The ``:ARG`` of ``--config=configs/FILE.py:ARG``, checked against ``choices``."""
    arg = arg or default
    if arg not in choices:
        raise ValueError(f"config argument {arg!r} is not one of {sorted(choices)}; "
                         f"use --config=configs/FILE.py:{sorted(choices)[0]}")
    return arg


def total_steps(train_cfg, steps_per_epoch: int) -> int:
    """Training length in steps from ``train.num_steps`` or ``train.num_epochs``."""
    if train_cfg.num_steps > 0:
        return int(train_cfg.num_steps)
    return int(math.ceil(train_cfg.num_epochs * steps_per_epoch))


def fail(field: str, value, fix: str):
    raise ValueError(f"config field {field}={value!r} is invalid: {fix}")


NONFINITE_POLICIES = ("skip", "abort", "rollback")


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None,
             num_processes: int | None = None) -> None:
    """Check a config before any device work; raise ``ValueError`` naming field, value and fix.

    Only the fields every method shares are checked here; the trainer then runs the method's
    own ``validate_config`` (:func:`jaxssl.methods.validate_config` does both).
    ``num_devices`` / ``num_processes`` default to what JAX sees (reading the device count
    allocates nothing); the global batch must split evenly over both.
    """
    if config.model.dtype not in ("float32", "bfloat16"):
        fail("model.dtype", config.model.dtype, "use 'float32' or 'bfloat16'")
    from jaxssl.models.remat import check_remat
    check_remat(config.model.remat)
    chunk = config.model.conv_batch_chunk
    if not isinstance(chunk, int) or chunk < 0:
        fail("model.conv_batch_chunk", chunk, "use 0 (off) or a positive number of images")
    t = config.train
    if t.num_steps < 0:
        fail("train.num_steps", t.num_steps, "must be positive (or 0 when train.num_epochs is set)")
    if t.num_epochs < 0:
        fail("train.num_epochs", t.num_epochs, "must be positive (or 0 when train.num_steps is set)")
    if (t.num_steps > 0) == (t.num_epochs > 0):
        raise ValueError(
            f"config fields train.num_steps={t.num_steps!r} and train.num_epochs={t.num_epochs!r}: "
            "set exactly one of them to a positive value (the other to 0)")
    if t.batch_size <= 0:
        fail("train.batch_size", t.batch_size, "must be a positive global batch size")
    for name in ("log_every_steps", "checkpoint_every_steps", "max_checkpoints_to_keep"):
        if t[name] <= 0:
            fail(f"train.{name}", t[name], "must be a positive number")
    if t.eval_every_steps < 0:
        fail("train.eval_every_steps", t.eval_every_steps, "use 0 (only at the end) or a positive number")
    if t.nonfinite_policy not in NONFINITE_POLICIES:
        fail("train.nonfinite_policy", t.nonfinite_policy, f"use one of {list(NONFINITE_POLICIES)}")
    if config.optim.base_lr <= 0:
        fail("optim.base_lr", config.optim.base_lr, "the learning rate must be > 0")
    if config.loss.temperature <= 0:
        fail("loss.temperature", config.loss.temperature, "the temperature must be > 0")
    if config.mesh.num_devices < 0:
        fail("mesh.num_devices", config.mesh.num_devices, "use 0 for all devices or a positive count")
    m = config.monitor
    if m.collapse_loss_rel_tol <= 0:
        fail("monitor.collapse_loss_rel_tol", m.collapse_loss_rel_tol, "must be > 0 (e.g. 0.01)")
    if m.collapse_patience < 1:
        fail("monitor.collapse_patience", m.collapse_patience, "must be >= 1 logged steps")
    _check_batch_split(config, num_devices, num_processes)


def _check_batch_split(config, num_devices: int | None, num_processes: int | None) -> None:
    if num_devices is None or num_processes is None:
        import jax  # deferred: config files import this module without JAX
        num_devices = num_devices if num_devices is not None else jax.device_count()
        num_processes = num_processes if num_processes is not None else jax.process_count()
    want = int(config.mesh.num_devices) or num_devices
    if want > num_devices:
        fail("mesh.num_devices", config.mesh.num_devices,
             f"only {num_devices} devices are visible; use at most {num_devices} (0: all)")
    if config.model.conv_batch_chunk and want > 1:
        fail("model.conv_batch_chunk", config.model.conv_batch_chunk,
             f"batch-chunked convs are a one-device CPU lever (on this {want}-device mesh the "
             "slices would cut across the sharded batch); set it to 0, or mesh.num_devices=1")
    b = int(config.train.batch_size)
    if b % want or b % num_processes:
        multiple = math.lcm(want, num_processes)
        fail("train.batch_size", b,
             f"the global batch must split evenly over the {want} devices and {num_processes} "
             f"processes; use a multiple of {multiple} (e.g. {max(1, round(b / multiple)) * multiple})")
