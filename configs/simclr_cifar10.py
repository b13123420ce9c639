"""SimCLR on CIFAR-10 with ResNet-18 (CIFAR stem): the SimCLR reference code's CIFAR recipe.

Command:   python -m jaxssl.main --config=configs/simclr_cifar10.py --workdir=runs/simclr_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   1000 epochs at batch 512: about 10 hours on one A100-class GPU (estimate from the
           step time of scripts/benchmark.py; not yet measured end to end).
Expected:  linear eval top-1 ~91 (google-research/simclr README.md:131) for exactly this
           pretraining command (README.md:76-85), evaluated with the README's linear command
           (README.md:113-123: momentum SGD LR 0.1, B 512, 100 epochs, crop + flip on the
           probe's inputs). The preset's in-training probe is the SimCLR ImageNet protocol on
           frozen, unaugmented features, not that command, so its number is not directly
           comparable. For orientation only, other recipes: solo-learn's SimCLR ResNet-18
           90.74 (solo-learn README.md:227; LARS 0.4, T 0.2, 256-d head, blur) and lightly's
           kNN 0.879 (lightly benchmarks.rst:191; SGD, 800 epochs, max over epochs).

Recipe (google-research/simclr README.md:76-85 and run.py defaults): batch 512, 1000 epochs,
LARS with learning rate 1.0 x B/256, weight decay 1e-4, temperature 0.5, colour-jitter strength
0.5 (multiplicative brightness), no blur, 32x32 crops of area [0.08, 1], 3-layer projection
head (``num_proj_layers=3``, hidden = 512, out 128), 10 warm-up epochs, cosine decay,
zero-init last BN, loss.scale = 2 (the reference's ``mean(loss_a + loss_b)``).
"""
from jaxssl.config import base_config, no_arg


def get_config(arg=None):
    no_arg(arg, __file__)
    c = base_config()
    c.method = "simclr"
    c.data.name = "cifar10"
    c.data.image_size = 32
    s = 0.5  # colour-jitter strength
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5, jitter_prob=0.8,
                          brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s,
                          grayscale_prob=0.2, blur_prob=0.0, resize_method="bicubic",
                          brightness_mode="multiplicative"))
    c.eval_crop_fraction = 1.0  # 32x32: the reference evaluates on the whole image
    c.model.update(dict(backbone="resnet18", stem="cifar", width_multiplier=1,
                        head="simclr_v2", head_hidden_dim=512, head_output_dim=128,
                        zero_init_residual=True, cifar_stem_padding=1))
    c.loss.temperature = 0.5
    c.loss.scale = 2.0
    c.optim.update(dict(name="lars", base_lr=1.0, lr_scaling="linear", weight_decay=1e-4,
                        momentum=0.9, trust_coefficient=1e-3, warmup_epochs=10.0,
                        schedule="cosine"))
    c.train.update(dict(batch_size=512, num_epochs=1000.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000, eval_every_steps=0))
    c.eval.update(dict(batch_size=1024, linear_protocol="simclr", linear_epochs=90,
                       linear_batch_size=4096, linear_weight_decay=0.0,
                       baselines=()))
    return c.lock()
