"""BERT fine-tuning on a GLUE task through tensorflow-datasets (``glue/<task>``).

Command:   python -m jaxssl.main --config=configs/bert_glue.py:sst2 --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR   (a run of configs/bert_base_mlm.py)
           (prepare the task first: python scripts/prepare_data.py glue/sst2)
Hardware:  one accelerator (batch 32 x 128 tokens).
Runtime:   not measured: jaxssl has no full GLUE run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"accuracy": ...}} on the GLUE dev set
           (validation; mnli: validation_matched). BERT-base (Devlin et al. 2019, Table 1,
           test set, with NSP pretraining on BooksCorpus + Wikipedia): SST-2 93.5, MNLI-m
           84.6, QNLI 90.5, MRPC 88.9 (F1), RTE 66.4, CoLA 52.1 (Matthews corr.), QQP 71.2
           (F1). jaxssl reports accuracy, pretrains without NSP and on the data its
           preset names, so these are orientation, not targets.

Recipe (google-research/bert ``run_classifier.py``; paper Appendix A.3): batch 32, max length
128, AdamW (no bias correction in the reference: optim.bias_correction where available),
lr 2e-5 (the paper's grid: 5e-5, 4e-5, 3e-5, 2e-5), 3 epochs, 10% linear warm-up then
linear decay, weight decay 0.01, clipping 1.0, dropout 0.1, pooler + linear classifier.
"""
from jaxssl.config import load_preset, parse_arg
from jaxssl.methods.text_classifier import text_classifier_config

TASKS = {t: t for t in ("sst2", "cola", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli")}


def get_config(arg=None):
    task = parse_arg(arg, TASKS, "sst2")
    c = text_classifier_config(load_preset("bert_base_mlm"))
    c.data.name = f"glue/{task}"
    c.data.seq_len = 128
    c.optim.base_lr = 2e-5
    c.train.update(dict(batch_size=32, num_epochs=3.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=1000))
    c.eval.batch_size = 256
    return c.lock()
