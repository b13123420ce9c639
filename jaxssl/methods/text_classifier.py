"""BERT sequence classification: fine-tuning a masked-language checkpoint on a labelled task.

``config.method='text_classify'``. The model is
:class:`jaxssl.models.bert.BertForSequenceClassification` (the pretrained ``bert`` encoder, a
fresh pooler on [CLS], dropout, a linear classifier); the data is a task of
:mod:`jaxssl.data.text_classification` (the embedded ``pydoc_chapters`` task, or GLUE through
tfds) tokenised with the *pretraining run's* WordPiece vocabulary (``data.vocab_file``, else
``vocab.txt`` of the ``train.init_from`` workdir), built by the trainer's
``text_classification`` data builder (:mod:`jaxssl.data.pipeline`). Loss: softmax cross-entropy over the
classes. Evaluation: top-1 accuracy on the task's labelled held-out split
(:mod:`jaxssl.evaluators.classification`, metric ``accuracy``), and the baselines
``classifier.baselines`` names (the same recipe from random initialisation; the majority
class).

Fine-tuning recipe (google-research/bert ``run_classifier.py`` and the paper, Section 4.1 /
Appendix A.3): batch 32, max length 128, Adam(W) with weight decay 0.01 (not on LayerNorm and
biases), lr in {5e-5, 4e-5, 3e-5, 2e-5}, linear warm-up over the first 10% of steps then linear
decay to 0, gradient clipping at global norm 1.0, dropout 0.1, 3 epochs (GLUE).
"""
from __future__ import annotations

import copy
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import config as config_lib
from jaxssl import checkpoint as checkpoint_lib
from jaxssl import rng
from jaxssl.data import text_classification as tc
from jaxssl.methods.base import Method
from jaxssl.methods import classifier as classifier_lib
from jaxssl.models.bert import BERT_PRESETS, BertForSequenceClassification


def text_classifier_config(pretrain_config) -> ml_collections.ConfigDict:
    """A fine-tuning config for a BERT pretrained with ``pretrain_config`` (unlocked): the same
    ``seed`` and ``model`` (so the encoder loads), the ``pydoc_chapters`` task at the
    pretraining ``seq_len``, BERT's fine-tuning optimizer; the caller sets lr and epochs."""
    c = copy.deepcopy(pretrain_config)
    c.unlock()
    c.method = "text_classify"
    if "mlm" in c:
        del c["mlm"]
    seq_len = int(c.data.seq_len)
    c.data = ml_collections.ConfigDict(dict(tc.data_defaults(), seq_len=seq_len,
                                            lowercase=bool(pretrain_config.data.lowercase),
                                            prefetch=int(pretrain_config.data.prefetch)))
    c.data.vocab_file = ""
    init_from = ml_collections.FieldReference(None, field_type=str)
    c.init_from = init_from
    c.train.init_from = init_from
    c.classifier = classifier_lib.section_defaults()
    c.classifier.pretrain_method = "mlm"
    c.optim.update(dict(name="adamw", lr_scaling="none", b1=0.9, b2=0.999, eps=1e-6,
                        weight_decay=0.01, warmup_fraction=0.1, warmup_epochs=0.0,
                        schedule="linear", grad_clip_norm=1.0,
                        # this run's own schedule (run_classifier.py: warm-up 10% of this run's
                        # num_train_steps, linear decay to 0), never the pretraining's span
                        schedule_total_steps=0, schedule_start_step=0))
    c.eval.update(dict(enabled=True, evaluators=("classification",), baselines=()))
    return c


class TextClassifier(Method):
    """BERT fine-tuned for sequence classification (module docstring)."""

    unit = "tok"
    data_kind = "text_classification"
    train_keys = ("ids", "segment_ids", "attention_mask", "label")
    default_evaluators = ("classification",)
    metric_name = "accuracy"

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        if "classifier" not in config or "vocab_file" not in config.data:
            raise ValueError("config.method='text_classify' needs the text-classification data "
                             "fields and a classifier section; build the config with "
                             "jaxssl.methods.text_classifier.text_classifier_config()")
        if config.model.backbone not in BERT_PRESETS:
            fail("model.backbone", config.model.backbone, f"use one of {sorted(BERT_PRESETS)}")
        if config.classifier.pretrain_method not in ("mlm", ""):
            fail("classifier.pretrain_method", config.classifier.pretrain_method,
                 "a BERT classifier starts from a masked-language run ('mlm') or nothing ('')")
        for name in config.classifier.baselines:
            if name not in ("random_init", "majority_class"):
                fail("classifier.baselines", tuple(config.classifier.baselines),
                     "use some of ('random_init', 'majority_class')")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        from jaxssl.methods.mlm import bert_config
        self.text = data.source  # jaxssl.data.pipeline.TextClassificationData
        self.seq_len = int(config.data.seq_len)
        self.bert = bert_config(config.model, self.text.tokenizer.vocab_size)
        self.num_classes = int(self.text.train.num_classes)
        self.model = BertForSequenceClassification(self.bert, self.num_classes)

    def items_per_step(self) -> int:
        return int(self.config.train.batch_size) * self.seq_len

    def init(self, key):
        ids = jnp.zeros((2, self.seq_len), jnp.int32)
        params = self.model.init({"params": key}, ids, ids, jnp.ones_like(ids),
                                 train=False)["params"]
        return params, {}

    def loss(self, params, model_state, batch, step):
        logits = self.model.apply({"params": params}, batch["ids"], batch["segment_ids"],
                                  batch["attention_mask"], train=True,
                                  rngs={"dropout": rng.step_key(self.config.seed, "dropout", step)})
        eps = float(self.config.classifier.label_smoothing)
        targets = jax.nn.one_hot(batch["label"], self.num_classes) * (1 - eps) + eps / self.num_classes
        loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
        acc = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
        return loss, (model_state, {"train_accuracy": acc})

    def chance_loss(self) -> float:
        return math.log(self.num_classes)

    def logits(self, params, model_state, inputs):
        """Eval-mode logits ``[B, K]`` of a token batch ``{ids, segment_ids, attention_mask}``."""
        del model_state
        return self.model.apply({"params": params}, inputs["ids"], inputs["segment_ids"],
                                inputs["attention_mask"], train=False)

    def random_init_baseline(self) -> dict | None:
        """The same recipe from random initialisation (with this run's vocabulary) when
        ``classifier.baselines`` lists ``random_init`` and this run starts from a checkpoint."""
        c = self.config
        if "random_init" not in tuple(c.classifier.baselines) or not config_lib.init_path(c):
            return None
        return {"train.init_from": config_lib.RANDOM_INIT, "classifier.baselines": (),
                "train.eval_every_steps": 0, "data.vocab_file": self.text.vocab_path}

    def save_artifacts(self, workdir: str) -> None:
        if jax.process_index() == 0 and workdir:
            from jaxssl import paths
            directory = paths.resolve(workdir)
            paths.makedirs(directory)
            dest = directory / "vocab.txt"
            if paths.is_remote(directory) or os.path.abspath(dest) != os.path.abspath(
                    self.text.vocab_path):
                with open(self.text.vocab_path, encoding="utf-8") as f:
                    paths.write_text(dest, f.read())

    def init_from(self, path: str, state, mesh):
        """Load the pretrained ``bert`` encoder of a masked-language checkpoint (strictly)."""
        stored, _ = checkpoint_lib.load_tree(path, mesh)
        theirs = stored.get("params", {}).get("bert")
        if theirs is None:
            raise checkpoint_lib.CheckpointError(
                f"train.init_from={path!r}: the checkpoint has no params/bert (a masked-language "
                "run's encoder); check the path")
        new = checkpoint_lib.load_subtree(state.params["bert"], theirs, path, "params/bert")
        return state.replace(params={**state.params, "bert": new}), ["params/bert"]


__all__ = ["TextClassifier", "text_classifier_config"]
