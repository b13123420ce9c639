"""BERT sequence classification: the model head (jaxssl.models.bert) and the data
(jaxssl.data.text_classification): BERT's layout, the embedded pydoc task, GLUE under mock_data."""
import functools
import hashlib
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxssl.data import corpus
from jaxssl.data import text_classification as tc
from jaxssl.data.tokenizer import train_wordpiece
from jaxssl.models.bert import BertConfig, BertEncoder, BertForMLM, BertForSequenceClassification

V, T, C = 97, 12, 3


# ------------------------------------------------------------------------------------ model
def tiny(**kw):
    fields = dict(vocab_size=V, max_position=16, hidden_dropout=0.0, num_layers=1)
    fields.update(kw)
    return BertConfig.from_preset("bert_tiny", **fields)


def inputs(batch=2, seed=0, num_real=(12, 7)):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(batch, T)).astype(np.int32)
    attention_mask = (np.arange(T)[None] < np.asarray(num_real)[:, None]).astype(np.int32)
    ids[attention_mask == 0] = 0
    segment_ids = (np.arange(T)[None] >= 5).astype(np.int32) * attention_mask
    return jnp.asarray(ids), jnp.asarray(segment_ids), jnp.asarray(attention_mask)


@functools.lru_cache(maxsize=None)
def classifier_params(config, num_classes=C):
    ids, seg, att = inputs()
    return jax.jit(BertForSequenceClassification(config, num_classes).init)(
        jax.random.key(1), ids, seg, att)["params"]


def apply_fn(config, num_classes=C):
    return jax.jit(BertForSequenceClassification(config, num_classes).apply,
                   static_argnames="train")


def shapes(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype), tree)


def test_bert_subtree_is_the_mlm_models_and_head_is_new():
    config = tiny()
    ids, seg, att = inputs()
    mlm = jax.jit(BertForMLM(config).init)(jax.random.key(0), ids, seg, att,
                                           jnp.zeros((2, 3), jnp.int32))
    params = classifier_params(config)
    assert set(params) == {"bert", "pooler", "classifier"}
    assert jax.tree.structure(params["bert"]) == jax.tree.structure(mlm["params"]["bert"])
    assert shapes(params["bert"]) == shapes(mlm["params"]["bert"])
    h = config.hidden_size
    assert shapes(params["pooler"]) == {"dense": {"kernel": ((h, h), jnp.float32),
                                                  "bias": ((h,), jnp.float32)}}
    assert shapes(params["classifier"]) == {"kernel": ((h, C), jnp.float32),
                                            "bias": ((C,), jnp.float32)}
    # run_classifier.py: output_weights ~ truncated_normal(stddev=0.02) (cut at 2 std), bias 0.
    w = np.asarray(params["classifier"]["kernel"])
    assert np.all(np.asarray(params["classifier"]["bias"]) == 0.0)
    assert np.abs(w).max() <= 0.04 and 0.01 < w.std() < 0.02


def test_logits_are_the_reference_head_on_a_loaded_mlm_encoder():
    """A pretrained MLM ``bert`` subtree drops in unchanged; logits follow run_classifier.py:
    ``(tanh(h_cls W_p + b_p)) W_c + b_c`` with h from the encoder alone (numpy reference)."""
    config = tiny()
    ids, seg, att = inputs(batch=3, num_real=(12, 7, 3))
    mlm = jax.jit(BertForMLM(config).init)(jax.random.key(7), ids, seg, att,
                                           jnp.zeros((3, 2), jnp.int32))
    params = dict(classifier_params(config), bert=mlm["params"]["bert"])
    logits = apply_fn(config)({"params": params}, ids, seg, att, train=False)
    assert logits.shape == (3, C) and logits.dtype == jnp.float32
    encoder = jax.jit(BertEncoder(config).apply)
    hidden = np.asarray(encoder({"params": mlm["params"]["bert"]}, ids, seg, att))
    pooler, head = params["pooler"]["dense"], params["classifier"]
    pooled = np.tanh(hidden[:, 0] @ np.asarray(pooler["kernel"]) + np.asarray(pooler["bias"]))
    expected = pooled @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-6)


def test_padding_under_the_mask_does_not_change_logits():
    config = tiny()
    params = classifier_params(config)
    f = apply_fn(config)
    ids, seg, att = inputs(num_real=(12, 7))
    base = np.asarray(f({"params": params}, ids, seg, att, train=False))
    pad = np.asarray(att) == 0
    assert pad.any()
    other_ids = np.where(pad, np.random.default_rng(3).integers(5, V, ids.shape), ids)
    other_seg = np.where(pad, 1, seg)
    moved = np.asarray(f({"params": params}, jnp.asarray(other_ids, jnp.int32),
                         jnp.asarray(other_seg, jnp.int32), att, train=False))
    np.testing.assert_allclose(moved, base, rtol=0, atol=1e-6)
    # ... while a real (unmasked) token does change them: the check above can fail.
    real = np.asarray(ids).copy()
    real[1, 3] = 5 if real[1, 3] != 5 else 6
    changed = np.asarray(f({"params": params}, jnp.asarray(real), seg, att, train=False))
    assert np.abs(changed[1] - base[1]).max() > 1e-4
    np.testing.assert_allclose(changed[0], base[0], rtol=0, atol=1e-6)


def test_dropout_only_in_training():
    config = tiny(hidden_dropout=0.1)
    params = classifier_params(config)
    f = apply_fn(config)
    ids, seg, att = inputs()
    v = {"params": params}
    ev = np.asarray(f(v, ids, seg, att, train=False))
    ev_rng = np.asarray(f(v, ids, seg, att, train=False, rngs={"dropout": jax.random.key(5)}))
    np.testing.assert_array_equal(ev, ev_rng)
    t1 = np.asarray(f(v, ids, seg, att, train=True, rngs={"dropout": jax.random.key(1)}))
    t2 = np.asarray(f(v, ids, seg, att, train=True, rngs={"dropout": jax.random.key(2)}))
    assert np.abs(t1 - t2).max() > 1e-5 and np.abs(t1 - ev).max() > 1e-5
    # With rate 0 the train pass equals the eval pass: dropout is the only difference.
    config0 = tiny(hidden_dropout=0.0)
    t0 = np.asarray(apply_fn(config0)({"params": classifier_params(config0)}, ids, seg, att,
                                      train=True, rngs={"dropout": jax.random.key(1)}))
    e0 = np.asarray(apply_fn(config0)({"params": classifier_params(config0)}, ids, seg, att,
                                      train=False))
    np.testing.assert_allclose(t0, e0, rtol=0, atol=1e-6)


def test_num_classes_must_be_positive():
    ids, seg, att = inputs()
    with pytest.raises(ValueError, match="num_classes=0"):
        BertForSequenceClassification(tiny(), 0).init(jax.random.key(0), ids, seg, att)


# ------------------------------------------------------------- reference: run_classifier.py
def reference_truncate_seq_pair(tokens_a, tokens_b, max_length):
    """google-research/bert run_classifier.py ``_truncate_seq_pair``, verbatim."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def reference_convert_single_example(text_a, text_b, max_seq_length, tokenizer):
    """``convert_single_example`` (run_classifier.py) with our tokenizer; padding id = [PAD]."""
    tokens_a = tokenizer.tokenize(text_a)
    tokens_b = None
    if text_b:
        tokens_b = tokenizer.tokenize(text_b)
    if tokens_b:
        reference_truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    else:
        if len(tokens_a) > max_seq_length - 2:
            tokens_a = tokens_a[0:(max_seq_length - 2)]
    tokens, segment_ids = ["[CLS]"], [0]
    for token in tokens_a:
        tokens.append(token)
        segment_ids.append(0)
    tokens.append("[SEP]")
    segment_ids.append(0)
    if tokens_b:
        for token in tokens_b:
            tokens.append(token)
            segment_ids.append(1)
        tokens.append("[SEP]")
        segment_ids.append(1)
    input_ids = [tokenizer.token_to_id(t) for t in tokens]
    input_mask = [1] * len(input_ids)
    while len(input_ids) < max_seq_length:
        input_ids.append(tokenizer.pad_id)
        input_mask.append(0)
        segment_ids.append(0)
    return input_ids, input_mask, segment_ids


@pytest.fixture(scope="module")
def tok():
    return train_wordpiece(corpus.load_pydoc_corpus("train"), vocab_size=1000)


def test_truncated_pair_lengths_equal_the_reference_loop():
    for m in range(0, 24):
        for la in range(0, 20):
            for lb in range(0, 20):
                a, b = list(range(la)), list(range(lb))
                reference_truncate_seq_pair(a, b, m)
                assert tc.truncated_pair_lengths(la, lb, m) == (len(a), len(b)), (la, lb, m)


def test_layout_equals_convert_single_example(tok):
    paragraphs = [t for t, _, _ in tc.pydoc_chapter_examples()[:40]]
    texts_a = paragraphs[:20] + ["Short one.", "x", ""]
    texts_b = paragraphs[20:40] + ["", "   ", "A much longer second text " * 9]
    for seq_len in (5, 8, 17, 64, 128):
        for b in (None, texts_b):
            got = tc.encode_examples(tok, texts_a, b, seq_len)
            for k in ("ids", "segment_ids", "attention_mask"):
                assert got[k].shape == (len(texts_a), seq_len) and got[k].dtype == np.int32
            for i, text_a in enumerate(texts_a):
                ids, mask, seg = reference_convert_single_example(
                    text_a, None if b is None else b[i], seq_len, tok)
                assert got["ids"][i].tolist() == ids, (seq_len, i)
                assert got["attention_mask"][i].tolist() == mask, (seq_len, i)
                assert got["segment_ids"][i].tolist() == seg, (seq_len, i)
    # truncation really happened (the comparison covered both rules)
    assert tc.encode_examples(tok, texts_a, texts_b, 17)["attention_mask"].sum(1).max() == 17


def test_layout_rejects_short_rows(tok):
    with pytest.raises(ValueError, match=r"data\.seq_len=4 .*at least 5"):
        tc.encode_examples(tok, ["a b"], ["c d"], 4)
    with pytest.raises(ValueError, match=r"data\.seq_len=2 .*at least 3"):
        tc.encode_examples(tok, ["a b"], None, 2)


# ---------------------------------------------------------------------- embedded pydoc task
def cfg(**kw):
    fields = dict(tc.data_defaults(), name=tc.PYDOC_TASK, seq_len=128, data_dir="")
    fields.update(kw)
    return ml_collections.ConfigDict(fields)


@pytest.fixture(scope="module")
def pydoc_splits(tok):
    return (tc.load_classification_split(cfg(), "train", tok),
            tc.load_classification_split(cfg(), "test", tok))


def digest(texts):
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    return h.hexdigest()


def test_pydoc_task_split_is_fixed_and_disjoint(tok, pydoc_splits):
    train, test = pydoc_splits
    again = tc.load_classification_split(cfg(), "train", tok)
    assert digest(again.text_a) == digest(train.text_a)
    np.testing.assert_array_equal(again.label, train.label)
    assert not set(train.text_a) & set(test.text_a)
    # The rule, recomputed independently: test iff int(sha256(text)[:8], 16) % 4 == 0.
    for split, name in ((train, "train"), (test, "test")):
        for text in split.text_a:
            in_test = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 4 == 0
            assert in_test == (name == "test")


def test_pydoc_task_examples_follow_the_docs_structure(pydoc_splits):
    from pydoc_data.topics import topics
    train, test = pydoc_splits
    assert set(tc.PYDOC_TOPIC_PAGE) <= set(topics)
    # Each example is a paragraph of a topic of its own page, of >= MIN_WORDS words.
    paragraphs = {}
    for name, page in tc.PYDOC_TOPIC_PAGE.items():
        for p in re.split(r"\n\s*\n", topics[name]):
            paragraphs.setdefault(" ".join(p.split()), set()).add(page)
    for split in (train, test):
        for text, y in zip(split.text_a, split.label):
            assert paragraphs[text] == {tc.PYDOC_PAGES[y]}
            assert len(text.split()) >= tc.MIN_WORDS
    # No example comes only from the masked-language corpus's held-out documents.
    seen = {" ".join(p.split()) for d in corpus.load_pydoc_corpus("train")
            for p in re.split(r"\n\s*\n", d)}
    held = {" ".join(p.split()) for d in corpus.load_pydoc_corpus("test")
            for p in re.split(r"\n\s*\n", d)}
    assert held - seen                      # such paragraphs exist ...
    assert not (held - seen) & (set(train.text_a) | set(test.text_a))   # ... and are excluded


def test_pydoc_task_arrays_sizes_and_balance(tok, pydoc_splits):
    train, test = pydoc_splits
    for split in (train, test):
        a = split.arrays()
        assert set(a) == {"ids", "segment_ids", "attention_mask", "label"}
        assert a["ids"].shape == (split.num_examples, 128) and a["label"].dtype == np.int32
        assert all(v.dtype == np.int32 for v in a.values())
        assert split.num_classes == 6 and split.label_names == tc.PYDOC_PAGES
        assert (a["segment_ids"] == 0).all() and split.text_b is None
        assert (a["ids"][:, 0] == tok.cls_id).all()
        np.testing.assert_array_equal(a["ids"], tc.encode_examples(tok, split.text_a, None, 128)["ids"])
    assert 700 <= train.num_examples <= 1500 and 200 <= test.num_examples <= 500
    assert 0.18 <= test.num_examples / (train.num_examples + test.num_examples) <= 0.32
    for split in (train, test):
        share = np.bincount(split.label, minlength=6) / split.num_examples
        assert share.min() >= 0.04 and share.max() <= 0.4, share


def test_pydoc_task_baselines_majority_and_bag_of_words(pydoc_splits):
    """Learnable but not trivial: bag-of-words LR well above the majority class, well below 1."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    train, test = pydoc_splits
    majority = tc.majority_class_accuracy(train.label, test.label)
    counts = np.bincount(train.label)
    assert majority == pytest.approx(np.mean(test.label == counts.argmax()))
    vec = CountVectorizer().fit(train.text_a)
    lr = LogisticRegression(max_iter=3000).fit(vec.transform(train.text_a), train.label)
    bow = float(np.mean(lr.predict(vec.transform(test.text_a)) == test.label))
    print(f"pydoc_chapters: {train.num_examples} train / {test.num_examples} test, "
          f"majority {majority:.3f}, bag-of-words LR {bow:.3f}")
    assert 0.15 <= majority <= 0.4
    assert bow >= majority + 0.3 and bow <= 0.95


def test_load_errors_name_field_value_and_fix(tok):
    with pytest.raises(ValueError, match=r"split='validation' .*\['train', 'test'\]"):
        tc.load_classification_split(cfg(), "validation", tok)
    with pytest.raises(ValueError, match=r"data\.name='pydoc' .*pydoc_chapters"):
        tc.load_classification_split(cfg(name="pydoc"), "train", tok)
    with pytest.raises(ValueError, match=r"data\.seq_len=2 "):
        tc.load_classification_split(cfg(seq_len=2), "train", tok)
    with pytest.raises(ValueError, match=r"data\.name='glue/stsb' .*regression"):
        tc.load_classification_split(cfg(name="glue/stsb"), "train", tok)
    with pytest.raises(ValueError, match=r"data\.name='glue/sst' .*glue/sst2"):
        tc.load_classification_split(cfg(name="glue/sst"), "train", tok)
    with pytest.raises(ValueError, match=r"split='test_matched' .*unlabelled.*validation_matched"):
        tc.load_classification_split(cfg(name="glue/mnli"), "test_matched", tok)
    with pytest.raises(ValueError, match=r"split='test' .*unlabelled"):
        tc.load_classification_split(cfg(name="glue/sst2"), "test", tok)
    assert tc.eval_split("glue/mnli") == "validation_matched"
    assert tc.eval_split("glue/rte") == "validation" and tc.eval_split(tc.PYDOC_TASK) == "test"


def test_tokenizer_may_be_a_vocab_path(tok, tmp_path, pydoc_splits):
    path = tmp_path / "vocab.txt"
    tok.save_vocab(path)
    from_path = tc.load_classification_split(cfg(), "test", str(path))
    np.testing.assert_array_equal(from_path.ids, pydoc_splits[1].ids)


# ------------------------------------------------------------------------------ GLUE (tfds)
def test_glue_sst2_and_mnli_under_mock_data(tok, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        sst2 = tc.load_classification_split(cfg(name="glue/sst2", seq_len=32, data_dir=str(tmp_path)),
                                            "train", tok)
        mnli = {s: tc.load_classification_split(cfg(name="glue/mnli", seq_len=24,
                                                    data_dir=str(tmp_path)), s, tok)
                for s in ("train", "validation_matched", "validation_mismatched")}
    assert sst2.ids.shape == (12, 32) and sst2.label.shape == (12,) and sst2.label.dtype == np.int32
    assert sst2.label_names == ("negative", "positive") and sst2.num_classes == 2
    assert sst2.label.min() >= 0 and sst2.label.max() < 2
    assert sst2.text_b is None and (sst2.segment_ids == 0).all()
    np.testing.assert_array_equal(sst2.ids, tc.encode_examples(tok, sst2.text_a, None, 32)["ids"])
    for split, m in mnli.items():
        assert m.split == split and m.ids.shape == (12, 24) and m.num_classes == 3
        assert m.label_names == ("entailment", "neutral", "contradiction")
        assert m.label.min() >= 0 and m.label.max() < 3
        assert m.text_b is not None and len(m.text_b) == 12
        ref = tc.encode_examples(tok, m.text_a, m.text_b, 24)
        for k in ("ids", "segment_ids", "attention_mask"):
            np.testing.assert_array_equal(getattr(m, k), ref[k])


def test_every_glue_task_loads_its_fields_under_mock_data(tok, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    names = {"cola": 2, "sst2": 2, "mrpc": 2, "qqp": 2, "mnli": 3, "mnli_matched": 3,
             "mnli_mismatched": 3, "qnli": 2, "rte": 2, "wnli": 2}       # tfds glue.py classes
    assert set(names) == set(tc.GLUE_TASKS)
    with tfds.testing.mock_data(num_examples=3):
        for task, num_classes in names.items():
            fields, splits = tc.GLUE_TASKS[task]
            split = tc.eval_split("glue/" + task)
            assert split in splits and not split.startswith("test")
            s = tc.load_classification_split(cfg(name="glue/" + task, seq_len=16,
                                                 data_dir=str(tmp_path)), split, tok)
            assert s.ids.shape == (3, 16) and s.num_classes == num_classes, task
            assert (s.text_b is None) == (len(fields) == 1), task


def _fixed_glue_dataset(premises, hypotheses, labels):
    import tensorflow as tf

    def as_dataset(self, *args, **kwargs):
        del args, kwargs
        return tf.data.Dataset.from_generator(
            lambda: ({"premise": p, "hypothesis": h, "label": y, "idx": i}
                     for i, (p, h, y) in enumerate(zip(premises, hypotheses, labels))),
            output_types=self.info.features.dtype, output_shapes=self.info.features.shape)
    return as_dataset


def test_glue_pair_fields_in_bert_order_and_unlabelled_rows_rejected(tok, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    premises = ["The cat sat on the mat.", "A list is a mutable sequence."]
    hypotheses = ["A cat is sitting.", "Lists cannot change."]
    with tfds.testing.mock_data(as_dataset_fn=_fixed_glue_dataset(premises, hypotheses, [0, 2])):
        m = tc.load_classification_split(cfg(name="glue/mnli", seq_len=40, data_dir=str(tmp_path)),
                                         "validation_matched", tok)
    assert m.text_a == tuple(premises) and m.text_b == tuple(hypotheses)   # premise = A (BERT)
    np.testing.assert_array_equal(m.label, [0, 2])
    for i in range(2):
        n = int(m.attention_mask[i].sum())
        a, b = tok.encode(premises[i]), tok.encode(hypotheses[i])
        assert m.ids[i, :n].tolist() == [tok.cls_id, *a, tok.sep_id, *b, tok.sep_id]
        assert m.segment_ids[i, :n].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    with tfds.testing.mock_data(as_dataset_fn=_fixed_glue_dataset(premises, hypotheses, [1, -1])):
        with pytest.raises(ValueError, match=r"split='train' .*1 examples of glue/mnli have no label"):
            tc.load_classification_split(cfg(name="glue/mnli", seq_len=40, data_dir=str(tmp_path)),
                                         "train", tok)


# --------------------------------------------------------------------- fine-tuning can learn
def test_fine_tuning_a_tiny_bert_beats_the_majority_class(tok):
    """A plain optax loop (no trainer): random-init tiny BERT on pydoc_chapters, train accuracy."""
    seq_len = 64
    train = tc.load_classification_split(cfg(seq_len=seq_len), "train", tok)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_layers=1, num_heads=2,
                        intermediate_size=256, max_position=seq_len, hidden_dropout=0.1)
    model = BertForSequenceClassification(config, train.num_classes)
    data = {k: jnp.asarray(v) for k, v in train.arrays().items()}
    params = model.init(jax.random.key(0), data["ids"][:2], data["segment_ids"][:2],
                        data["attention_mask"][:2])["params"]
    opt = optax.adamw(2e-3, weight_decay=0.01)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, idx, key):
        def loss_fn(p):
            logits = model.apply({"params": p}, data["ids"][idx], data["segment_ids"][idx],
                                 data["attention_mask"][idx], train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, data["label"][idx]).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def accuracy(params):
        logits = model.apply({"params": params}, data["ids"], data["segment_ids"],
                             data["attention_mask"], train=False)
        return jnp.mean(jnp.argmax(logits, -1) == data["label"])

    rng = np.random.default_rng(0)
    for s in range(60):
        idx = jnp.asarray(rng.choice(train.num_examples, 32, replace=False))
        params, opt_state, loss = step(params, opt_state, idx, jax.random.key(s))
    acc = float(accuracy(params))
    majority = tc.majority_class_accuracy(train.label, train.label)
    print(f"tiny BERT, 60 steps: train accuracy {acc:.3f} vs majority {majority:.3f}, loss {float(loss):.3f}")
    assert acc >= majority + 0.1
