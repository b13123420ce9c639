"""DINOv2 on ImageNet-1k: the facebookresearch/dinov2 "fast setup", ViT-L/16 short recipe.

Variant: vitl16_short (the only one): dinov2/configs/train/vitl16_short.yaml ("this
corresponds to the default config": batch 64 per GPU, ``block_chunks`` 4) over
dinov2/configs/ssl_default_config.yaml, run by the README's ``python dinov2/run/train/train.py
--nodes 4 --config-file dinov2/configs/train/vitl16_short.yaml`` on 4 x 8 A100-80GB (batch
32 x 64 = 2048).

Command:   python -m jaxssl.main --config=configs/dinov2_imagenet.py --workdir=runs/dinov2_vitl16
Hardware:  32 A100-80GB in the reference ("approximately 1 day"); a TPU v4-64 / v5p-64 class
           slice here. The two 65536-prototype heads at ViT-L need parameter sharding for
           large per-device batches.
Runtime:   not measured here.
Expected:  ImageNet top-1 of the teacher: k-NN 81.6, linear 82.9 (README "Fast setup";
           dinov2/eval/knn.py and eval/linear.py).

Recipe (the yaml values): ViT-L/16 (D 1024, 24 blocks, 16 heads, MLP FFN, LayerScale 1e-5, no
registers); DINO head 3 layers 2048 -> 256 -> 65536 prototypes; the iBOT head shared with it
(``ibot.separate_head: false``); ``train.centering: centering`` (running centers, momentum
0.9; the paper's Sinkhorn-Knopp is ``dinov2.centering='sinkhorn_knopp'``); loss weights DINO
1, KoLeo 0.1 (per GPU: ``koleo_group_size`` 64), iBOT 1; block masks on half of the global
crops with 10-50% of the patches, blocks of 4 .. 0.5 N patches, aspect [0.3, 1/0.3]; crops:
2 x 224 area [0.32, 1] and 8 x 96 area [0.05, 0.32] with DINO's augmentations; teacher EMA
0.992 -> 1 (cosine, per iteration), temperature 0.04 -> 0.07 over 30 "epochs"; AdamW (0.9,
0.999), LR 0.004 x sqrt(B / 1024) (``sqrt_wrt_1024``; jaxssl's 'sqrt' rule: 0.004 / 32 x
sqrt(B)), 10 warm-up "epochs", cosine to 1e-6, weight decay 0.04 -> 0.4, gradient norm
clipped at 3.0 per module (backbone, head), layer-wise LR decay 0.9, patch embedding LR x
0.2, last layer frozen for 1 "epoch".

DINOv2's "epoch" is ``OFFICIAL_EPOCH_LENGTH`` = 1250 iterations (100 of them: 125,000
iterations = 256M images, ~200 passes over ImageNet-1k). jaxssl's epoch is one pass (625
steps at batch 2048), so this preset trains ``train.num_steps`` 125,000 and states every
epoch-valued schedule in passes: warm-up 20, teacher temperature warm-up 60, last-layer
freeze 2 (each = DINOv2's value x 1250 / 625).

Deviations: stochastic depth (``drop_path_rate`` 0.3, uniform) is not applied; sin-cos
positions recomputed per crop size instead of learned positions interpolated; fp32 instead
of fp16 FSDP mixed precision; those of jaxssl/methods/dinov2.py (patch center from the
global mean of masked patches).
"""
from jaxssl.config import load_preset, parse_arg
from jaxssl.methods.dinov2 import dinov2_config

OFFICIAL_EPOCH_LENGTH = 1250   # iterations per DINOv2 "epoch" (ssl_default_config.yaml)
BATCH = 2048                   # 32 GPUs x batch_size_per_gpu 64
STEPS_PER_PASS = 1281167 // BATCH   # 625: jaxssl's epoch on ImageNet-1k train at this batch
EPOCH = OFFICIAL_EPOCH_LENGTH / STEPS_PER_PASS   # one DINOv2 epoch in jaxssl epochs (2.0)


def get_config(arg=None):
    parse_arg(arg, {"vitl16_short": "vitl16_short"}, "vitl16_short")
    dino = load_preset("dino_imagenet", "vit_s16")   # DataAugmentationDINO (same in dinov2)
    c = dinov2_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.augment = dino.augment
    c.data.update(dict(normalize_mean=tuple(dino.data.normalize_mean),   # ImageNet mean / std
                       normalize_std=tuple(dino.data.normalize_std)))
    c.augment.crop_scale = (0.32, 1.0)                # crops.global_crops_scale
    for group in ("global_1", "global_2", "local"):
        c.dino[group] = dino.dino[group]
    c.eval_crop_fraction = 0.875
    c.model.update(dict(backbone="vit_large", patch_size=16, pool="cls", posemb="sincos2d",
                        vit_layerscale_init=1e-5, vit_num_registers=0, vit_mlp_type="mlp"))
    c.dino.update(dict(out_dim=65536, head_hidden_dim=2048, head_bottleneck_dim=256,
                       head_num_layers=3, head_use_bn=False, norm_last_layer=True,
                       student_temp=0.1, teacher_temp=0.07, warmup_teacher_temp=0.04,
                       warmup_teacher_temp_epochs=int(round(30 * EPOCH)), center_momentum=0.9,
                       freeze_last_layer_epochs=int(round(1 * EPOCH)), local_crops_number=8,
                       local_crop_size=96, local_crop_scale=(0.05, 0.32)))
    c.ibot.update(dict(shared_head=True, patch_out_dim=65536, patch_center_momentum=0.9,
                       patch_loss_weight=1.0, mask_prob=0.5, mask_ratio=(0.1, 0.5),
                       mask_min_num_patches=4, mask_max_block_share=0.5,
                       mask_aspect=(0.3, 1 / 0.3)))
    c.dinov2.update(dict(centering="centering", sinkhorn_iters=3, dino_loss_weight=1.0,
                         koleo_loss_weight=0.1, koleo_group_size=64, layerwise_decay=0.9,
                         patch_embed_lr_mult=0.2, clip_grad_per_module=3.0))
    c.teacher.update(dict(momentum=0.992, momentum_final=1.0, momentum_schedule="cosine"))
    c.train.update(dict(batch_size=BATCH, num_epochs=0.0, num_steps=100 * OFFICIAL_EPOCH_LENGTH,
                        log_every_steps=100, checkpoint_every_steps=3 * OFFICIAL_EPOCH_LENGTH))
    c.optim.update(dict(name="adamw", base_lr=0.004 / 32.0, lr_scaling="sqrt", weight_decay=0.04,
                        weight_decay_end=0.4, b1=0.9, b2=0.999, eps=1e-8,
                        warmup_epochs=10 * EPOCH, schedule="cosine", min_lr=1e-6,
                        grad_clip_per_param=0.0, grad_clip_norm=0.0))
    # dinov2/eval/knn.py: nb_knn (10, 20, 100, 200), temperature 0.07; 20-NN reported.
    c.eval.update(dict(enabled=False, linear_protocol="simclr", baselines=(), knn_k=20,
                       knn_temperature=0.07))
    return c.lock()
