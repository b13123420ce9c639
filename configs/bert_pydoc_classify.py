"""BERT text classification on the Python documentation: fine-tuning the bert_pydoc model.

Command:   python -m jaxssl.main --config=configs/bert_pydoc_classify.py --workdir=W \
               --config.init_from=runs/bert_pydoc
           (first pretrain with configs/bert_pydoc.py into runs/bert_pydoc; its vocab.txt is
           reused)
Hardware:  2 CPU cores.
Runtime:   a few minutes (the pretrained fine-tune, then the same recipe from random init).
Expected:  W/eval_results.json = {"pretrained": {"accuracy": ...}, "random_init":
           {"accuracy": ...}, "majority_class": {"accuracy": ...}}: top-1 on the 301
           held-out paragraphs of the embedded ``pydoc_chapters`` task (which of six CPython
           documentation pages a paragraph comes from; jaxssl.data.text_classification).
           Majority class 0.262, a bag-of-words logistic regression 0.738 (Python 3.11.7).
           Measured (seed 0, 1 CPU device, from a bert_pydoc run): pretrained 0.671, random
           init 0.532, majority class 0.262.

Recipe: BERT's fine-tuning (google-research/bert ``run_classifier.py``): [CLS] pooler +
dropout 0.1 + linear classifier, AdamW (b2 0.999, eps 1e-6, weight decay 0.01, none on
LayerNorm and biases), linear warm-up over 10% of the steps then linear decay, global-norm
clipping 1.0, batch 32, length 128. Scaled to the 930 training paragraphs and BERT-tiny:
10 epochs at lr 3e-4 (BERT-base on GLUE: 3 epochs at 2e-5 to 5e-5).
"""
from jaxssl.config import load_preset, no_arg
from jaxssl.methods.text_classifier import text_classifier_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = text_classifier_config(load_preset("bert_pydoc"))
    c.classifier.baselines = ("random_init", "majority_class")
    c.optim.base_lr = 3e-4
    c.train.update(dict(batch_size=32, num_epochs=10.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=300))
    c.eval.batch_size = 256
    return c.lock()
