"""DINO on ImageNet: the facebookresearch/dino README training commands.

Variants (``--config=configs/dino_imagenet.py:VARIANT``):
  vit_s16 (default)  ViT-S/16, 100 epochs   README "Vanilla DINO training": main_dino.py
                     defaults, ``--arch vit_small`` on 8 GPUs (batch 8 x 64 = 512)
  vit_s16_300ep      ViT-S/16, 300 epochs   README "Boosting DINO performance": ``--epochs 300
                     --teacher_temp 0.07 --warmup_teacher_temp_epochs 30 --norm_last_layer
                     false`` with run_with_submitit.py's 2 nodes x 8 GPUs (batch 1024)
  vit_b16            ViT-B/16, 400 epochs   the README's ViT-B/16 row: the ``args`` file linked
                     there for the released checkpoint (``dino_vitbase16_pretrain/args.txt``):
                     4 nodes x 8 GPUs x 32 = batch 1024, lr 0.00075, min_lr 2e-6, clip_grad 0.3,
                     teacher_temp 0.04 -> 0.07 over 50 epochs, freeze_last_layer 3, 10 local
                     crops, global crops [0.25, 1], local [0.05, 0.25], use_fp16 false
  r50                ResNet-50, 100 epochs  README "ResNet-50 and other convnets trainings":
                     ``--arch resnet50 --optimizer sgd --lr 0.03 --weight_decay 1e-4
                     --weight_decay_end 1e-4 --global_crops_scale 0.14 1 --local_crops_scale
                     0.05 0.14`` on 8 GPUs (batch 512)

Command:   python -m jaxssl.main --config=configs/dino_imagenet.py:vit_s16 --workdir=runs/dino_vits16
           python -m jaxssl.main --config=configs/dino_imagenet.py:vit_b16 --workdir=runs/dino_vitb16
           python -m jaxssl.main --config=configs/dino_imagenet.py:r50 --workdir=runs/dino_r50
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  vit_s16 / r50: 8 V100 in the reference (vit_s16: "1.75 day"); vit_s16_300ep 16 GPUs
           ("2.6 days"); vit_b16 32 GPUs (args.txt ``world_size`` 32). A TPU v3-8 / v3-16 /
           v3-32 or 8 / 16 / 32 A100-class GPUs here.
Runtime:   not measured here.
Expected:  ImageNet top-1 under DINO's own protocols (eval_knn.py: 20-NN on the teacher's
           features, T 0.07; eval_linear.py: linear on the last 4 [CLS] tokens for ViT-S):
             vit_s16        kNN 69.3, linear 74.0   (README "Vanilla DINO training")
             vit_s16_300ep  kNN 73.3, linear 76.0   (README "Boosting DINO performance")
             vit_b16        kNN 76.1, linear 78.2   (README "Pretrained models" ViT-B/16 row and
                            its linear-evaluation table; eval_linear.py for ViT-B: the last
                            block's [CLS] + average-pooled patch tokens, README.md:340). The
                            README's other ViT-B command ("DINO with ViT-base network":
                            main_dino.py defaults with ``--arch vit_base`` on 16 GPUs, 100
                            epochs) has no published number, so the variant follows the
                            released model's args.
             r50            no number is published for this command (README gives its
                            training log only). The README's ResNet-50 row (kNN 67.5,
                            linear 75.3) is the released checkpoint, trained with the
                            args.txt of that row (large-batch LARS: batch 4080 on 80 GPUs per
                            the author in facebookresearch/dino issue #133; a head that differs
                            from main_dino.py's per issue #189), which is not in the repository
                            and not reproduced here.
           Evaluation is off below; ``--config.eval.enabled=True --config.eval.evaluators=knn``
           runs DINO's kNN protocol (eval_knn.py: weighted 20-NN, T 0.07, on the teacher's
           final [CLS], L2-normalised); the linear protocol is configs/dino_imagenet_linear.py.

Recipe (main_dino.py argparse defaults, DataAugmentationDINO, utils.py): head 3-layer MLP
(2048, GELU, no BN: ``use_bn_in_head`` False) -> 256 bottleneck -> L2 norm -> weight-normalised
65536 prototypes (``out_dim``), last layer frozen for 1 epoch (``freeze_last_layer``),
``norm_last_layer`` True (300ep: False); student temperature 0.1, teacher 0.04 (300ep: 0.04 ->
0.07 linearly over 30 epochs), center momentum 0.9; teacher EMA 0.996 -> 1 on a cosine
(``momentum_teacher``); crops: 2 global 224 px, area [0.4, 1] (r50: [0.14, 1]), 8 local 96 px
(``local_crops_number`` default 8), area [0.05, 0.4] (r50: [0.05, 0.14]), bicubic; flip,
ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2; PIL blur sigma [0.1, 2] p 1.0 (global
1), 0.1 (global 2), 0.5 (local); solarize p 0.2 (global 2); ImageNet mean/std; LR
``lr x B/256`` with 10 linear warm-up epochs then cosine to ``min_lr`` 1e-6
(``cosine_scheduler``); per-parameter gradient clipping at norm 3.0 (``clip_grad``,
``clip_gradients``: each parameter separately); weight decay on every parameter except
biases and 1-D ones (``get_params_groups``).
  vit_s16*: ViT-S/16 (384 wide, 12 blocks, 6 heads; vision_transformer.py ``vit_small``), AdamW
       LR 0.0005 x B/256, weight decay 0.04 -> 0.4 on a cosine (``weight_decay_end``).
  vit_b16: ViT-B/16 (768 wide, 12 blocks, 12 heads; ``vit_base``), the values of args.txt above;
       its ``drop_path_rate`` 0.1 is deviation (1). Learned positions as DINO's (trunc-normal
       0.02, bicubically resized with DINO's +0.1 offset for the 96 px crops) and float32
       (args.txt: ``use_fp16`` false), so deviations (2) and (5) do not apply to it.
  r50: torchvision ResNet-50 (no zero-init), SGD momentum 0.9, LR 0.03 x B/256, weight decay
       1e-4 constant (``--weight_decay_end 1e-4``).

Deviations: (1) the student ViT has no stochastic depth (DINO: ``drop_path_rate`` 0.1); (2) ViT
positions are fixed sin-cos recomputed per crop size (DINO: learned, bicubically interpolated
for the 96 px crops); (3) the ViT's initialisation is jaxssl's (xavier-uniform Dense kernels)
instead of DINO's ``trunc_normal_(std=.02)``; (4) none for input normalisation: ImageNet
mean/std after the augmentations (``data.normalize_*`` for the ViTs; r50 normalises inside the
ResNet, ``model.input_mean`` / ``input_std``); (5) float32 instead of DINO's fp16
mixed precision (``use_fp16`` True; ``model.dtype='bfloat16'`` is the nearest); (6) after the
last-layer freeze Adam's bias correction counts from step 0 (jaxssl/methods/dino.py).
"""
from jaxssl.config import parse_arg
from jaxssl.methods.dino import dino_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # DataAugmentationDINO transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)
VARIANTS = ("vit_s16", "vit_s16_300ep", "vit_b16", "r50")


def get_config(arg=None):
    variant = parse_arg(arg, {v: v for v in VARIANTS}, "vit_s16")
    vit = variant.startswith("vit")
    global_scale = (0.4, 1.0) if vit else (0.14, 1.0)     # --global_crops_scale
    local_scale = (0.05, 0.4) if vit else (0.05, 0.14)    # --local_crops_scale
    c = dino_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.augment.update(dict(crop_scale=global_scale, crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bicubic", resize_antialias=True, flip_prob=0.5,
                          jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.1, brightness_mode="multiplicative", jitter_random_order=True,
                          grayscale_prob=0.2, blur_prob=0.5, blur_sigma=(0.1, 2.0),
                          blur_kernel="sigma", solarize_prob=0.0, solarize_threshold=0.5))
    c.dino.global_1.update(dict(blur_prob=1.0, solarize_prob=0.0))   # global_transfo1
    c.dino.global_2.update(dict(blur_prob=0.1, solarize_prob=0.2))   # global_transfo2
    c.dino.local.update(dict(blur_prob=0.5, solarize_prob=0.0))      # local_transfo
    c.eval_crop_fraction = 0.875   # eval_linear.py / eval_knn.py: Resize(256) + CenterCrop(224)
    c.dino.update(dict(out_dim=65536, head_hidden_dim=2048, head_bottleneck_dim=256,
                       head_num_layers=3, head_use_bn=False, norm_last_layer=True,
                       student_temp=0.1, teacher_temp=0.04, warmup_teacher_temp=0.04,
                       warmup_teacher_temp_epochs=0, center_momentum=0.9,
                       freeze_last_layer_epochs=1, local_crops_number=8, local_crop_size=96,
                       local_crop_scale=local_scale))
    c.teacher.update(dict(momentum=0.996, momentum_final=1.0, momentum_schedule="cosine"))
    c.train.update(dict(batch_size=512, num_epochs=100.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2500))
    if vit:
        c.model.update(dict(backbone="vit_small", patch_size=16, pool="cls", posemb="sincos2d"))
        # DataAugmentationDINO's transforms.Normalize, after the augmentations
        c.data.update(dict(normalize_mean=IMAGENET_MEAN, normalize_std=IMAGENET_STD))
        c.optim.update(dict(name="adamw", base_lr=0.0005, lr_scaling="linear", weight_decay=0.04,
                            weight_decay_end=0.4, b1=0.9, b2=0.999, eps=1e-8,
                            warmup_epochs=10.0, schedule="cosine", min_lr=1e-6,
                            grad_clip_per_param=3.0))
        if variant == "vit_s16_300ep":
            c.dino.update(dict(teacher_temp=0.07, warmup_teacher_temp_epochs=30,
                               norm_last_layer=False))
            c.train.update(dict(batch_size=1024, num_epochs=300.0))
        if variant == "vit_b16":   # dino_vitbase16_pretrain/args.txt
            # learned positions, resized for the 96 px crops as interpolate_pos_encoding does
            c.model.update(dict(backbone="vit_base", posemb="learned"))
            c.augment.crop_scale = (0.25, 1.0)                     # global_crops_scale
            c.dino.update(dict(teacher_temp=0.07, warmup_teacher_temp=0.04,
                               warmup_teacher_temp_epochs=50, norm_last_layer=True,
                               freeze_last_layer_epochs=3, local_crops_number=10,
                               local_crop_scale=(0.05, 0.25)))
            c.optim.update(dict(base_lr=0.00075, min_lr=2e-6, grad_clip_per_param=0.3))
            c.train.update(dict(batch_size=1024, num_epochs=400.0))
    else:
        c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1,
                            zero_init_residual=False, input_mean=IMAGENET_MEAN,
                            input_std=IMAGENET_STD))
        c.optim.update(dict(name="sgd", base_lr=0.03, lr_scaling="linear", weight_decay=1e-4,
                            weight_decay_end=-1.0, momentum=0.9, nesterov=False,
                            warmup_epochs=10.0, schedule="cosine", min_lr=1e-6,
                            grad_clip_per_param=3.0))
    # eval_knn.py: --nb_knn (20 reported in the paper), --temperature 0.07, teacher features
    c.eval.update(dict(enabled=False, linear_protocol="simclr", baselines=(), knn_k=20,
                       knn_temperature=0.07))
    return c.lock()
