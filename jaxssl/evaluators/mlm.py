"""Masked-LM evaluation on held-out rows: masked-token accuracy, perplexity, and a baseline.

Every held-out row is evaluated exactly once, on any device and process count: the rows go
through :func:`jaxssl.data.batching.eval_batches` (fixed-shape batches, rounded up to a
multiple of the device and process count, the last one padded with masked-out rows).
The masking is fixed: row ``i`` (its index in the held-out split) is masked with
``fold_in(eval_key, i)`` (``mask_tokens(..., row_offset=batch start)``), so the masked
positions, and hence the numbers, are the same at every evaluation of a run and do not depend
on the batch size or the device count. Sums are exact counts; the reported values are

    masked_token_accuracy        = sum_masked [argmax logits == target] / num_masked_tokens
    perplexity                   = exp( sum_masked CE(logits, target) / num_masked_tokens )
    most_frequent_token_accuracy = sum_masked [target == most frequent TRAINING token] / num_masked_tokens

over the same masked positions (the 80/10/10 corrupted positions, as BERT's
``run_pretraining.py`` evaluates ``masked_lm_accuracy``). The last one is the accuracy of a
model that ignores its input and always predicts the commonest training token.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from jaxssl import losses
from jaxssl import sharding as sharding_lib
from jaxssl.augment import masking
from jaxssl.data import batching

# (params, inputs, segment_ids, attention_mask, positions [B, P]) -> logits [B, P, V]
LogitsFn = Callable[..., jax.Array]


def evaluate_masked_lm(logits_fn: LogitsFn, params, rows: dict, *, key: jax.Array, mask_id: int,
                       vocab_size: int, rate: float, max_predictions: int, whole_word: bool,
                       most_frequent_id: int, batch_size: int, mesh: Mesh) -> dict:
    """Masked-token accuracy, perplexity and the most-frequent-token baseline of ``logits_fn``.

    Args:
      logits_fn: the model in eval mode, ``(params, inputs, segment_ids, attention_mask,
        positions) -> float logits [B, P, V]``; jittable (params are passed, not closed
        over, so they are not baked into the compiled program as constants).
      params: the (replicated) parameters to evaluate.
      rows: held-out packed rows ``{ids, segment_ids, attention_mask, special, word_start}``,
        host numpy ``[S, T]`` (the same on every process).
      key: the fixed evaluation masking key.
      mask_id, vocab_size, rate, max_predictions, whole_word: the masking of training
        (:func:`jaxssl.augment.masking.mask_tokens`).
      most_frequent_id: the commonest non-special token of the training rows.
      batch_size: requested global batch (rounded up to a multiple of devices x processes).
      mesh: the 1-D ``("data",)`` mesh; batches are sharded over it.

    Returns:
      ``{masked_token_accuracy, perplexity, most_frequent_token_accuracy, num_masked_tokens,
      num_sequences}`` as Python floats / ints.
    """
    num_rows = int(rows["ids"].shape[0])
    if num_rows == 0:
        raise ValueError("evaluate_masked_lm got 0 held-out rows; the test split is empty")
    num_shards = math.lcm(int(mesh.devices.size), jax.process_count())
    local = sharding_lib.process_batch_slice(batching.eval_batch_size(batch_size, num_shards), mesh)

    @jax.jit
    def batch_sums(params, batch, row_valid, row_offset):
        inputs, weights = masking.mask_tokens(
            key, batch["ids"], batch["special"], mask_id=mask_id, vocab_size=vocab_size, rate=rate,
            max_predictions=max_predictions, word_start=batch["word_start"] if whole_word else None,
            row_offset=row_offset)
        positions, valid = masking.gather_masked(weights, max_predictions)
        valid = valid * row_valid[:, None].astype(jnp.float32)                # padding rows: 0
        targets = jnp.take_along_axis(batch["ids"], positions, axis=1)
        logits = logits_fn(params, inputs, batch["segment_ids"], batch["attention_mask"], positions)
        _, m = losses.masked_lm_loss(logits, targets, valid)
        frequent = jnp.sum(valid * (targets == most_frequent_id).astype(jnp.float32))
        return {"correct": m["correct"], "weight_sum": m["weight_sum"], "ce_sum": m["ce_sum"],
                "frequent": frequent, "rows": jnp.sum(row_valid.astype(jnp.int32))}

    totals = {"correct": 0.0, "weight_sum": 0.0, "ce_sum": 0.0, "frequent": 0.0, "rows": 0}
    for indices, row_valid in batching.eval_batches(num_rows, batch_size, num_shards):
        host = {k: rows[k][indices[local]] for k in ("ids", "segment_ids", "attention_mask",
                                                    "special", "word_start")}
        host["row_valid"] = row_valid[local]
        glob = sharding_lib.global_batch_from_local(host, mesh)
        row_valid_g = glob.pop("row_valid")
        # Row j of this batch is held-out row indices[0] + j: its mask key is fold_in(key, that).
        sums = jax.device_get(batch_sums(params, glob, row_valid_g, jnp.int32(indices[0])))
        for k in totals:
            totals[k] += sums[k].item()
    n = totals["weight_sum"]
    if n == 0:
        raise ValueError("no held-out token was masked (every row is empty or special)")
    return {
        "masked_token_accuracy": totals["correct"] / n,
        "perplexity": float(math.exp(totals["ce_sum"] / n)),
        "most_frequent_token_accuracy": totals["frequent"] / n,
        "num_masked_tokens": int(round(n)),
        "num_sequences": int(totals["rows"]),
    }


class MaskedLMEvaluator:
    """``config.eval.evaluators`` entry ``'masked_lm'``: :func:`evaluate_masked_lm` of the
    run's ``masked_logits`` on the held-out rows of ``config.data`` (the packed rows, the
    vocabulary and the commonest training token of :func:`jaxssl.data.text_source.load_text_data`,
    the same cached object the trainer's feeder was built from) with ``config.mlm``'s masking."""

    name = "masked_lm"

    def __init__(self, config, mesh, *, masked_logits, **unused_functions):
        del unused_functions
        self.config = config
        self.mesh = mesh
        self.masked_logits = masked_logits

    def __call__(self, state, workdir: str, final: bool) -> dict:
        del workdir, final  # the baseline is a count over the same positions: always reported
        from jaxssl import rng
        from jaxssl.data import text_source
        c = self.config
        text = text_source.load_text_data(c.data, seed=int(c.seed))
        return evaluate_masked_lm(
            self.masked_logits, state.params, text.test, key=rng.root_key(c.seed, "eval_mask"),
            mask_id=text.tokenizer.mask_id, vocab_size=text.tokenizer.vocab_size,
            rate=float(c.mlm.rate), max_predictions=int(c.mlm.max_predictions),
            whole_word=bool(c.mlm.whole_word), most_frequent_id=text.most_frequent_id,
            batch_size=int(c.eval.batch_size), mesh=self.mesh)
