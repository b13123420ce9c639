"""MAE's fine-tuning recipe at digits scale: 10 labels per class, from the MAE quickstart.

Command:   python -m jaxssl.main --config=configs/mae_digits_finetune.py --workdir=W \
               --config.init_from=runs/mae_digits   (first run configs/mae_digits.py there)
Hardware:  2 CPU cores.
Runtime:   a few minutes (the pretrained fine-tune, then the same recipe from random init).
Expected:  W/eval_results.json = {"pretrained": {"finetune_10": acc}, "random_init":
           {"finetune_10": acc}}: top-1 on the 540 held-out digits after fine-tuning on 100
           labelled digits. Where it stands (one run, seed 0, from the mae_digits run):
           pretrained 0.315, random init 0.556 -- the MAE-pretrained encoder fine-tunes
           WORSE than a random one here (at lr 1e-3 x B/256: 0.176 vs 0.239). mae_digits'
           features do not beat random init under a linear probe either; 4 visible 4x4
           patches of an 8x8 digit are far from the regime where MAE pays off.

Recipe: MAE's ``main_finetune.py`` (see configs/mae_vit_base_imagenet_finetune.py) with its
layer-wise lr decay 0.65, drop path 0.1, mixup 0.8 / cutmix 1.0, label smoothing 0.1,
random erasing 0.25, AdamW, warm-up then half-cosine to min_lr 1e-6, global pool + fc_norm,
trunc-normal(2e-5) head. Scaled to digits: RandAugment off (its ops assume natural RGB
images; on 8x8 strokes a shear or a posterize changes the digit), no flip, crops as in
pretraining, batch 32 of the 100 labelled examples, lr 1.6e-2 x B/256 (2e-3, MAE's ViT-B
value at batch 1024), 100 epochs, 5 warm-up.
"""
from jaxssl.config import load_preset, no_arg
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = classifier_config(load_preset("mae_digits"), "finetune")
    c.model.pool = "gap_fc_norm"
    c.classifier.update(dict(
        labels_per_class=10, head="linear", head_init="trunc_normal", head_init_std=2e-5,
        layer_decay=0.65, drop_path_rate=0.1, label_smoothing=0.1, mixup_alpha=0.8,
        cutmix_alpha=1.0, mixup_switch_prob=0.5, randaugment="", random_erasing=0.25,
        baselines=("random_init",)))
    c.augment.update(dict(crop_scale=(0.4, 1.0), flip_prob=0.0))
    c.optim.update(dict(name="adamw", base_lr=1.6e-2, lr_scaling="linear", b1=0.9, b2=0.999,
                        eps=1e-8, weight_decay=0.05, warmup_epochs=5.0, schedule="cosine",
                        min_lr=1e-6, no_decay_names=("cls_token", "pos_embed"),
                        grad_clip_norm=0.0))
    c.train.update(dict(batch_size=32, num_epochs=100.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=300))
    c.eval.batch_size = 512
    return c.lock()
