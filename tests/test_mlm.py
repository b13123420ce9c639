"""Masked-LM method, evaluator, text source and configs (jaxssl.methods.mlm, evaluators.mlm, data.text_source)."""
import json
import math
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxssl import methods
from jaxssl import rng, sharding, train
from jaxssl.augment import masking
from jaxssl.config import load_preset
from jaxssl.data import corpus, text, text_source
from jaxssl.data.tokenizer import SPECIAL_TOKENS
from jaxssl.data import pipeline
from jaxssl.evaluators.mlm import MaskedLMEvaluator
from jaxssl.methods import mlm


def tiny(config, cache_dir, **overrides):
    """The preset shrunk to a bert_tiny-like model, short rows and a small vocabulary."""
    c = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
    c.data.update(dict(cache_dir=str(cache_dir), vocab_size=300, seq_len=32))
    c.model.update(dict(backbone="bert_tiny", num_layers=1, hidden_size=32, num_heads=2,
                        intermediate_size=64, max_position=64, dtype="float32"))
    c.mlm.max_predictions = 5
    c.train.update(dict(batch_size=8, num_steps=2, num_epochs=0.0, log_every_steps=1,
                        checkpoint_every_steps=100, eval_every_steps=0))
    c.optim.warmup_fraction = 0.5
    c.eval.batch_size = 200
    for key, value in overrides.items():
        section, field = key.split(".")
        c[section][field] = value
    return c.lock()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vocab_cache")


@pytest.fixture(scope="module")
def pydoc_tiny(cache_dir):
    return tiny(load_preset("bert_pydoc"), cache_dir)


# ------------------------------------------------------------------------------ text source
def test_vocabulary_is_trained_on_the_train_split_only_and_cached(cache_dir, monkeypatch):
    seen = []
    real = text.train_wordpiece

    def spy(texts, vocab_size, lowercase=True):
        texts = list(texts)
        seen.append(texts)
        return real(texts, vocab_size, lowercase)

    monkeypatch.setattr(text, "train_wordpiece", spy)
    cfg = ml_collections.ConfigDict(dict(text_source.data_defaults(), data_dir=None, train_split=None,
                                         test_split=None, vocab_size=257, seq_len=48,
                                         cache_dir=str(cache_dir / "fresh")))
    data = text_source.load_text_data(cfg, seed=0)
    assert seen == [corpus.load_pydoc_corpus("train")]      # trained once, on train documents
    assert data.vocab_path.startswith(str(cache_dir / "fresh"))
    assert data.tokenizer.vocab_size <= 257
    assert [data.tokenizer.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)

    # A second corpus load with another row length reuses the cached vocabulary (no second
    # training: a resume or an evaluation reads what the run used).
    cfg.seq_len = 64
    again = text_source.load_text_data(cfg, seed=0)
    assert len(seen) == 1 and again.vocab_path == data.vocab_path
    assert again.train["ids"].shape[1] == 64

    # data.vocab_file is used as given.
    cfg.vocab_file = data.vocab_path
    from_file = text_source.load_text_data(cfg, seed=0)
    assert len(seen) == 1 and from_file.vocab_path == data.vocab_path
    np.testing.assert_array_equal(from_file.train["ids"], again.train["ids"])

    # The baseline token: the commonest non-special training token, counted independently.
    counts = {}
    for row_ids, row_special in zip(data.train["ids"], data.train["special"]):
        for t, s in zip(row_ids.tolist(), row_special.tolist()):
            if not s:
                counts[t] = counts.get(t, 0) + 1
    assert counts[data.most_frequent_id] == max(counts.values())


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("field, value, message", [
    ("mlm.rate", 0.0, "mlm.rate=0.0"),
    ("mlm.rate", 1.0, "mlm.rate=1.0"),
    ("data.seq_len", 256, "data.seq_len=256.*max_position=128"),
    ("mlm.max_predictions", 200, "mlm.max_predictions=200"),
    ("data.name", "pydocs", "data.name='pydocs'"),
    ("model.backbone", "resnet50", "model.backbone='resnet50'"),
    ("model.num_heads", 3, "model.num_heads=3"),
    ("data.vocab_file", "/no/such/vocab.txt", "data.vocab_file="),
])
def test_validate_config_names_field_value_and_fix(field, value, message):
    c = load_preset("bert_pydoc")
    section, name = field.split(".")
    with c.unlocked():
        c[section][name] = value
    with pytest.raises(ValueError, match=message):
        methods.validate_config(c)


def test_presets_are_valid_and_follow_the_bert_recipe():
    for arg, (t, p) in {"phase1": (128, 20), "phase2": (512, 80), "phase2_rewarm": (512, 80)}.items():
        c = load_preset("bert_base_mlm", arg)
        methods.validate_config(c)
        assert (c.data.seq_len, c.mlm.max_predictions, c.mlm.rate) == (t, p, 0.15)
        assert (c.model.backbone, c.optim.name, c.optim.base_lr, c.optim.weight_decay) == (
            "bert_base", "adamw", 1e-4, 0.01)
        assert (c.optim.b1, c.optim.b2, c.optim.schedule, c.train.batch_size) == (0.9, 0.999, "linear", 256)
        # 10k warm-up steps of the schedule (1M steps split over the phases; the re-warm
        # variant: a schedule of phase 2's own 100k steps)
        span = c.optim.schedule_total_steps or c.train.num_steps
        assert round(c.optim.warmup_fraction * span) == 10_000
    methods.validate_config(load_preset("bert_pydoc"))


def test_flops_per_step_matches_performance_md():
    # docs/performance.md: BERT-base, T=128, head on 15% of positions: 0.545 GFLOP per token.
    cfg = mlm.BertConfig.from_preset("bert_base")
    assert mlm.bert_train_flops_per_token(cfg, 128, 0.15) == pytest.approx(0.545e9, rel=2e-3)
    assert mlm.bert_train_flops_per_token(cfg, 128, 1.0) == pytest.approx(0.668e9, rel=2e-3)


def make_mlm(cfg, mesh):
    """A MaskedLM on ``mesh`` with the training data the trainer would build for it."""
    return mlm.MaskedLM(cfg, mesh, pipeline.build_train_data(cfg, mesh, mlm.MaskedLM),
                        total_steps=1)


# ------------------------------------------------------------------------------ evaluation
def test_evaluation_counts_every_held_out_row_once_on_1_and_8_devices(pydoc_tiny):
    cfg = pydoc_tiny
    results = {}
    for n in (1, 8):
        mesh = sharding.make_mesh(devices=jax.devices()[:n])
        method = make_mlm(cfg, mesh)
        params, _ = jax.jit(method.init)(rng.root_key(cfg.seed, "init"))
        results[n] = MaskedLMEvaluator(cfg, mesh, **method.eval_functions())(
            types.SimpleNamespace(params=params), "", final=True)
    rows = method.text.test
    num_rows = rows["ids"].shape[0]
    assert num_rows % 200 != 0         # the last eval batch is padded on both meshes
    assert results[1]["num_sequences"] == results[8]["num_sequences"] == num_rows

    # Exactly BERT's count per row, n = min(P, max(1, round(0.15 m))), summed over every row once.
    m = (~rows["special"]).sum(axis=1)
    expected = sum(min(5, max(1, int(round(0.15 * k)))) if k else 0 for k in m.tolist())
    assert results[1]["num_masked_tokens"] == results[8]["num_masked_tokens"] == expected
    for k in ("masked_token_accuracy", "perplexity", "most_frequent_token_accuracy"):
        np.testing.assert_allclose(results[8][k], results[1][k], rtol=1e-5)

    # Reference: all rows in one unpadded batch, masked with the same fixed key, scored in numpy.
    key = rng.root_key(cfg.seed, "eval_mask")
    inputs, weights = masking.mask_tokens(key, rows["ids"], rows["special"], mask_id=method.mask_id,
                                          vocab_size=method.vocab_size, rate=0.15, max_predictions=5)
    logits = np.asarray(method.model.apply({"params": params}, inputs, rows["segment_ids"],
                                           rows["attention_mask"], None, train=False), np.float64)
    w = np.asarray(weights) > 0
    targets = rows["ids"][w]
    lse = np.log(np.exp(logits[w] - logits[w].max(-1, keepdims=True)).sum(-1)) + logits[w].max(-1)
    ce = lse - logits[w][np.arange(targets.size), targets]
    assert w.sum() == expected
    np.testing.assert_allclose(results[1]["masked_token_accuracy"],
                               np.mean(logits[w].argmax(-1) == targets), atol=1e-6)
    np.testing.assert_allclose(results[1]["perplexity"], math.exp(ce.mean()), rtol=1e-4)
    np.testing.assert_allclose(results[1]["most_frequent_token_accuracy"],
                               np.mean(targets == method.text.most_frequent_id), atol=1e-6)


# ------------------------------------------------------------------------------ train step on 1 vs 8 devices
def _loss_and_grads_1_vs_8(cfg, leaves_to_check, rtol):
    """Loss and gradients of MaskedLM.loss on 1 device vs one trainer step on 8 (batch sharded)."""
    mesh1 = sharding.make_mesh(devices=jax.devices()[:1])
    mesh8 = sharding.make_mesh(devices=jax.devices()[:8])
    method1, method8 = make_mlm(cfg, mesh1), make_mlm(cfg, mesh8)
    tx = optax.sgd(1.0)
    state = train.state_lib.create(lambda: method8.init(rng.root_key(cfg.seed, "init")), tx, mesh8)
    params = jax.device_get(state.params)
    step = 3

    batch1 = method1.data.feeder(step)
    loss1, grads1 = jax.jit(jax.value_and_grad(lambda p, b: method1.loss(p, {}, b, jnp.int32(step))[0]))(
        params, batch1)
    grads1 = jax.device_get(grads1)

    # 8 devices: the trainer's own step (batch sharded over "data") with SGD lr 1, so the
    # update is -grad; the state is replicated over the 8 devices.
    batch8 = method8.data.feeder(step)
    assert batch8["ids"].sharding.spec[0] == "data" and len(batch8["ids"].sharding.device_set) == 8
    state = state.replace(step=jax.device_put(jnp.int32(step), sharding.replicated(mesh8)))
    step_fn = jax.jit(train.make_train_step(method8, tx, lambda s: 1.0))
    new_state, metrics = step_fn(state, batch8)
    np.testing.assert_allclose(float(metrics["loss"]), float(loss1), rtol=rtol)
    np.testing.assert_allclose(float(metrics["grad_norm"]), float(optax.tree.norm(grads1)), rtol=rtol)
    new_params = jax.device_get(new_state.params)
    flat1 = dict(jax.tree_util.tree_flatten_with_path(grads1)[0])
    flat_old = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    flat_new = dict(jax.tree_util.tree_flatten_with_path(new_params)[0])
    names = {jax.tree_util.keystr(k): k for k in flat1}
    for name in leaves_to_check:
        k = names[name]
        g8 = np.asarray(flat_old[k], np.float64) - np.asarray(flat_new[k], np.float64)
        g1 = np.asarray(flat1[k], np.float64)
        # |p - p'| recovers g up to the float32 rounding of p (about 1e-7 |p|).
        atol = 1e-6 * np.abs(flat_old[k]).max() + rtol * np.abs(g1).max()
        np.testing.assert_allclose(g8, g1, rtol=rtol, atol=atol, err_msg=name)
    return float(loss1)


GRAD_LEAVES = ("['bert']['embeddings']['word_embeddings']['embedding']",
               "['bert']['encoder']['layer']['0']['attention']['self']['query']['kernel']",
               "['cls']['predictions']['bias']",
               "['cls']['predictions']['transform']['LayerNorm']['scale']")


def test_train_step_same_loss_and_grads_on_1_and_8_devices_tiny(pydoc_tiny):
    loss = _loss_and_grads_1_vs_8(pydoc_tiny, GRAD_LEAVES, rtol=1e-4)
    assert np.isfinite(loss) and loss > 0


@pytest.mark.slow
def test_bert_base_train_step_same_loss_and_grads_on_1_and_8_devices(cache_dir, tmp_path):
    # BERT-base (L12 H768 A12 I3072, 512 positions) with BERT's 30,522-token vocabulary size:
    # a vocab.txt of the pydoc WordPiece tokens padded with unused tokens, like BERT's [unusedN].
    small = text.train_wordpiece(corpus.load_pydoc_corpus("train"), 2000)
    tokens = [small.id_to_token(i) for i in range(small.vocab_size)]
    tokens += [f"[unused{i}]" for i in range(30522 - len(tokens))]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tokens) + "\n")
    c = ml_collections.ConfigDict(load_preset("bert_base_mlm", "phase1").to_dict())
    c.data.update(dict(name="pydoc", train_split=None, test_split=None, max_test_documents=0,
                       vocab_file=str(vocab), sentence_pairs=True, cache_dir=str(cache_dir)))
    c.model.dtype = "float32"
    c.train.batch_size = 8
    c.lock()
    methods.validate_config(c)
    assert c.data.seq_len == 128 and c.model.backbone == "bert_base"
    layers = [f"['bert']['encoder']['layer']['{i}']['output']['dense']['kernel']" for i in (0, 11)]
    _loss_and_grads_1_vs_8(c, GRAD_LEAVES + tuple(layers), rtol=1e-4)


# ------------------------------------------------------------------------------ configs run
def _run(cfg, workdir):
    results = train.run(cfg, str(workdir))
    with open(os.path.join(workdir, "eval_results.json")) as f:
        written = json.load(f)
    assert written == results
    for k in ("masked_token_accuracy", "perplexity", "most_frequent_token_accuracy", "num_masked_tokens"):
        assert k in results and np.isfinite(results[k])
    assert 0.0 <= results["masked_token_accuracy"] <= 1.0 and results["perplexity"] > 1.0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    steps = [rec for rec in lines if "loss" in rec]
    assert [rec["step"] for rec in steps] == [1, 2] and all(np.isfinite(r["loss"]) for r in steps)
    assert all(rec["tok_per_s"] > 0 for rec in steps)
    assert os.path.isfile(os.path.join(workdir, "vocab.txt"))
    return results


def test_bert_pydoc_config_runs_and_writes_results(pydoc_tiny, tmp_path):
    results = _run(pydoc_tiny, tmp_path / "w")
    # The written vocabulary reproduces the run's token ids.
    tok = text.WordPieceTokenizer.from_vocab_file(tmp_path / "w" / "vocab.txt")
    doc = corpus.load_pydoc_corpus("train")[0]
    method = make_mlm(pydoc_tiny, sharding.make_mesh(1))
    assert tok.encode(doc)[:20] == method.text.tokenizer.encode(doc)[:20]
    assert results["num_sequences"] == method.text.test["ids"].shape[0]


def test_bert_base_config_runs_on_mock_wikipedia(cache_dir, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):
        cfg = tiny(load_preset("bert_base_mlm", "phase1"), cache_dir,
                   **{"data.data_dir": str(tmp_path / "tfds"), "model.dtype": "float32"})
        assert cfg.data.name.startswith("wikipedia/") and cfg.data.sentence_pairs
        _run(cfg, tmp_path / "w")


def test_lm1b_text_source_under_mock_data(cache_dir, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = ml_collections.ConfigDict(dict(text_source.data_defaults(), name="lm1b",
                                         data_dir=str(tmp_path), train_split="train",
                                         test_split="test", max_test_documents=7, vocab_size=200,
                                         seq_len=24, cache_dir=str(cache_dir)))
    with tfds.testing.mock_data(num_examples=30):
        data = text_source.load_text_data(cfg, seed=0)
        docs = corpus.load_tfds_text("lm1b", "test", str(tmp_path), max_documents=7)
    assert data.train["ids"].shape[1] == 24 and data.train["ids"].shape[0] > 0
    # The held-out rows are exactly the 7 test documents, packed with the train vocabulary.
    expected = text.tokenize_and_pack(data.tokenizer, docs, 24)
    for k in text_source.ROW_FIELDS:
        np.testing.assert_array_equal(data.test[k], expected[k])
