"""BERT masked-language-model pretraining (Devlin et al., 2019), without next-sentence prediction.

One step on the global batch of packed rows ``{ids, segment_ids, attention_mask, special,
word_start}`` (``[B, T]``, chosen by the step's permutation and gathered on the device):

1. masking, keyed by ``rng.step_key(seed, 'mask', step)`` and the row's global index
   (:func:`jaxssl.augment.masking.mask_tokens`): per row ``n = min(P, max(1, round(0.15 m)))``
   of its non-special tokens (or whole words) are selected, ``m`` = the row's tokens including
   [CLS] / [SEP] (BERT's ``len(tokens)``; ``mlm.count_special_tokens=False``: without them);
   80% -> [MASK], 10% -> a random token, 10% kept. Rows are re-masked every epoch (RoBERTa's dynamic masking).
2. ``positions [B, P]`` of the selected tokens (:func:`gather_masked`, BERT's
   ``masked_lm_positions``), ``P = mlm.max_predictions`` (BERT: 20 at T=128, 80 at T=512).
3. ``logits [B, P, V] = BertForMLM(inputs, segment_ids, attention_mask, positions)`` — the
   tied-embedding MLM head runs on the P gathered positions only; dropout keyed by
   ``rng.step_key(seed, 'dropout', step)``.
4. loss = mean cross-entropy over the selected positions (``losses.masked_lm_loss``):

       L = sum_{b,p} w_bp * -log softmax(logits_bp)[target_bp] / sum_{b,p} w_bp

Config: ``data`` text fields (:func:`jaxssl.data.text_source.data_defaults`), ``model`` BERT
fields (:func:`model_defaults`) and the ``mlm`` section (:func:`section_defaults`); presets start
from :func:`mlm_base_config`. Evaluation: :mod:`jaxssl.evaluators.mlm` on the held-out rows.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import losses, rng
from jaxssl.augment import masking
from jaxssl.data import corpus, text_source
from jaxssl.methods.base import Method
from jaxssl.models.bert import BERT_PRESETS, BertConfig, BertForMLM


def section_defaults() -> ml_collections.ConfigDict:
    """The ``mlm`` config section: BERT's masking (``create_pretraining_data.py`` flags)."""
    return ml_collections.ConfigDict(dict(
        rate=0.15,                # masked_lm_prob: fraction of a row's non-special tokens selected
        max_predictions=20,       # max_predictions_per_seq, P (BERT: 20 at T=128, 80 at T=512)
        whole_word=False,         # whole-word masking (BERT's do_whole_word_mask)
        count_special_tokens=True,  # m in round(rate * m) counts [CLS]/[SEP] (BERT's len(tokens))
    ))


def model_defaults() -> dict:
    """The ``model`` fields a BERT uses; size fields of 0 take the preset's value."""
    return dict(
        backbone="bert_base",     # preset: bert_tiny | bert_small | bert_base | bert_large
        num_layers=0, hidden_size=0, num_heads=0, intermediate_size=0,   # 0: the preset's
        max_position=512,         # learned position embeddings (>= data.seq_len)
        hidden_dropout=0.1,       # BERT: 0.1
        attention_dropout=0.0,    # BERT: 0.1; > 0 leaves the fused attention path (models/bert.py)
        remat="none",             # rematerialise each layer: 'none' | 'full' | 'dots' (models/remat.py)
    )


def mlm_base_config() -> ml_collections.ConfigDict:
    """``jaxssl.config.base_config()`` with the text ``data`` fields, BERT ``model`` fields and
    the ``mlm`` section added (unlocked: the preset sets the recipe and locks it)."""
    from jaxssl.config import base_config
    c = base_config()
    c.method = "mlm"
    c.data.update(text_source.data_defaults())
    c.model.update(model_defaults())
    c.mlm = section_defaults()
    c.eval.baselines = ()
    return c


def bert_config(model_cfg, vocab_size: int) -> BertConfig:
    """The :class:`BertConfig` of ``model_cfg`` (preset + non-zero size overrides)."""
    overrides = {k: int(model_cfg[k]) for k in ("num_layers", "hidden_size", "num_heads",
                                                "intermediate_size") if model_cfg[k]}
    return BertConfig.from_preset(
        model_cfg.backbone, vocab_size=vocab_size, max_position=int(model_cfg.max_position),
        hidden_dropout=float(model_cfg.hidden_dropout),
        attention_dropout=float(model_cfg.attention_dropout), dtype=model_cfg.dtype,
        remat=str(model_cfg.remat), **overrides)


def bert_train_flops_per_token(cfg: BertConfig, seq_len: int, head_fraction: float) -> float:
    """docs/performance.md: ``6 N_enc + 12 L T d + 6 (d^2 + d V) f_head`` per token (FLOP = 2 MAC).

    ``N_enc = L (4 d^2 + 2 d I)`` encoder matmul weights (= ``12 L d^2`` for ``I = 4d``);
    ``12 L T d`` is the attention score and mix matmuls (forward + backward);
    ``f_head`` is the fraction of positions the MLM head runs on (``P / T`` when gathered).
    """
    L, d, V, I = cfg.num_layers, cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size
    n_enc = L * (4 * d * d + 2 * d * I)
    return 6.0 * n_enc + 12.0 * L * seq_len * d + 6.0 * (d * d + d * V) * head_fraction


class MaskedLM(Method):
    """BERT MLM on packed text rows held on the device."""

    unit = "tok"
    data_kind = "text_mlm"
    train_keys = ("ids", "segment_ids", "attention_mask", "special", "word_start")
    default_evaluators = ("masked_lm",)

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        d, m = config.data, config.model
        if "mlm" not in config or "seq_len" not in d:
            raise ValueError("config method='mlm' needs the text data fields and the mlm section; "
                             "start the preset from jaxssl.methods.mlm.mlm_base_config()")
        mc = config.mlm
        if d.name != text_source.PYDOC and d.name.split("/")[0] not in corpus.TFDS_TEXT_KEYS \
                and not d.text_key:
            fail("data.name", d.name, f"use '{text_source.PYDOC}' (embedded) or a tfds text dataset "
                 f"({sorted(corpus.TFDS_TEXT_KEYS)}; others need data.text_key)")
        if m.backbone not in BERT_PRESETS:
            fail("model.backbone", m.backbone, f"use one of {sorted(BERT_PRESETS)} for method 'mlm'")
        min_len = 5 if d.sentence_pairs else 3
        if not min_len <= d.seq_len <= m.max_position:
            fail("data.seq_len", d.seq_len, f"use {min_len} <= seq_len <= model.max_position="
                 f"{m.max_position} (BERT: 128, then 512)")
        if not 0.0 < mc.rate < 1.0:
            fail("mlm.rate", mc.rate, "the masked fraction must be in (0, 1) (BERT: 0.15)")
        if not 1 <= mc.max_predictions <= d.seq_len:
            fail("mlm.max_predictions", mc.max_predictions,
                 f"use 1 <= max_predictions <= data.seq_len={d.seq_len} (BERT: 20 at T=128, 80 at T=512)")
        if not d.vocab_file and d.vocab_size <= 5:
            fail("data.vocab_size", d.vocab_size, "a trained vocabulary needs > 5 tokens (BERT: 30522)")
        if d.vocab_file and not os.path.isfile(d.vocab_file):
            fail("data.vocab_file", d.vocab_file, "the file does not exist; pass a BERT vocab.txt "
                 "(e.g. a run's WORKDIR/vocab.txt) or '' to train one")
        for k in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
            if m[k] < 0:
                fail(f"model.{k}", m[k], "use 0 for the preset's value or a positive size")
        heads = m.num_heads or BERT_PRESETS[m.backbone][2]
        hidden = m.hidden_size or BERT_PRESETS[m.backbone][1]
        if hidden % heads:
            fail("model.num_heads", heads, f"must divide model.hidden_size={hidden}")
        for k in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= m[k] < 1.0:
                fail(f"model.{k}", m[k], "a dropout rate must be in [0, 1)")
        if config.eval.batch_size <= 0:
            fail("eval.batch_size", config.eval.batch_size, "must be a positive number of rows")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        self.text = data.source  # text_source.TextData: tokenizer, train / test rows
        tok = self.text.tokenizer
        self.vocab_size = tok.vocab_size
        self.mask_id = tok.mask_id
        self.seq_len = int(config.data.seq_len)
        self.max_predictions = int(config.mlm.max_predictions)
        self.bert = bert_config(config.model, self.vocab_size)
        self.model = BertForMLM(self.bert)

    def items_per_step(self) -> int:
        return int(self.config.train.batch_size) * self.seq_len

    # ----- model ------------------------------------------------------------------------
    def init(self, key):
        ids = jnp.zeros((2, self.seq_len), jnp.int32)
        positions = jnp.zeros((2, self.max_predictions), jnp.int32)
        params = self.model.init({"params": key}, ids, ids, jnp.ones_like(ids), positions,
                                 train=False)["params"]
        return params, {}

    def mask(self, key, batch, row_offset=0):
        """``(inputs [B, T], positions [B, P], valid [B, P], targets [B, P])`` of a batch."""
        mc = self.config.mlm
        inputs, weights = masking.mask_tokens(
            key, batch["ids"], batch["special"], mask_id=self.mask_id, vocab_size=self.vocab_size,
            rate=float(mc.rate), max_predictions=self.max_predictions,
            word_start=batch["word_start"] if mc.whole_word else None, row_offset=row_offset,
            length_mask=(batch["attention_mask"] > 0) if mc.count_special_tokens
            else None)
        positions, valid = masking.gather_masked(weights, self.max_predictions)
        targets = jnp.take_along_axis(batch["ids"], positions, axis=1)
        return inputs, positions, valid, targets

    def loss(self, params, model_state, batch, step):
        seed = self.config.seed
        inputs, positions, valid, targets = self.mask(rng.step_key(seed, "mask", step), batch)
        logits = self.model.apply({"params": params}, inputs, batch["segment_ids"],
                                  batch["attention_mask"], positions, train=True,
                                  rngs={"dropout": rng.step_key(seed, "dropout", step)})
        loss, m = losses.masked_lm_loss(logits, targets, valid)
        return loss, (model_state, {"mlm_accuracy": m["accuracy"],
                                    "masked_per_row": m["weight_sum"] / batch["ids"].shape[0]})

    def masked_logits(self, params, inputs, segment_ids, attention_mask, positions):
        """Eval-mode (no dropout) MLM logits ``[B, P, V]`` (the ``masked_lm`` evaluator's)."""
        return self.model.apply({"params": params}, inputs, segment_ids, attention_mask, positions,
                                train=False)

    def save_artifacts(self, workdir: str) -> None:
        """Copy the vocabulary to ``WORKDIR/vocab.txt`` (with ``WORKDIR/vocab_info.json`` naming
        its source), so the run's ids can be decoded and a fine-tuning run reuses it."""
        if jax.process_index() != 0 or not workdir:
            return
        from jaxssl import paths
        directory = paths.resolve(workdir)
        paths.makedirs(directory)
        dest = directory / "vocab.txt"
        if paths.is_remote(directory) or os.path.abspath(dest) != os.path.abspath(self.text.vocab_path):
            with open(self.text.vocab_path, encoding="utf-8") as f:
                paths.write_text(dest, f.read())
        info = {"source": os.path.abspath(self.text.vocab_path), "vocab_size": self.vocab_size,
                "lowercase": bool(self.config.data.lowercase),
                "most_frequent_train_token": self.text.tokenizer.id_to_token(self.text.most_frequent_id)}
        paths.write_text(directory / "vocab_info.json", json.dumps(info, indent=2))

    def flops_per_step(self) -> float:
        """Model FLOPs of one step: tokens x docs/performance.md's per-token formula, f_head = P / T."""
        per_token = bert_train_flops_per_token(self.bert, self.seq_len,
                                               self.max_predictions / self.seq_len)
        return per_token * self.items_per_step()
