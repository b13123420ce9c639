"""Evaluators on frozen features: extraction on any device count, weighted kNN, linear probe,
few-label subsets and the protocol wiring. References are independent: a plain numpy kNN,
scikit-learn's LogisticRegression, and the MoCo / SimCLR schedule formulas written out."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from jaxssl import sharding
from jaxssl.data.feeder import DeviceReader
from jaxssl.evaluators import features as features_lib
from jaxssl.evaluators import knn as knn_lib
from jaxssl.evaluators import linear_probe as lp
from jaxssl.evaluators import protocol


# ----------------------------------------------------------------------------- helpers

def _blobs(num_per_class, num_classes, dim, seed, spread=0.05):
    """Linearly separable clusters around well-separated random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 3.0
    labels = np.repeat(np.arange(num_classes), num_per_class)
    feats = centres[labels] + spread * rng.normal(size=(labels.size, dim))
    order = rng.permutation(labels.size)
    return feats[order].astype(np.float32), labels[order]


def _numpy_knn(train, train_y, test, num_classes, k, temperature):
    """Wu et al. 2018 weighted kNN, written out in float64 numpy."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    sim = test.astype(np.float64) @ train.astype(np.float64).T
    k = min(k, train.shape[0])
    preds = []
    for row in sim:
        nbrs = np.argsort(-row)[:k]
        scores = np.zeros(num_classes)
        for j in nbrs:
            scores[train_y[j]] += math.exp(row[j] / temperature)
        preds.append(int(np.argmax(scores)))
    return np.array(preds)


@pytest.fixture(scope="module")
def digits_split():
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:1200], perm[1200:]
    return x[tr].astype(np.float32), y[tr], x[te].astype(np.float32), y[te]


# ----------------------------------------------------------------------------- features

@pytest.mark.parametrize("num_devices", [1, 3, 8])
def test_extract_split_matches_one_shot_on_any_device_count(num_devices):
    mesh = sharding.make_mesh(num_devices)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(37, 4, 4, 3), dtype=np.uint8)  # 37: prime, not a batch multiple
    proj = jnp.asarray(rng.normal(size=(48, 5)), jnp.float32)

    @jax.jit
    def embed(batch):
        x = batch.astype(jnp.float32).reshape(batch.shape[0], -1) / 255.0
        return jnp.tanh(x @ proj) + jnp.arange(5.0)[None, :]

    labels = np.arange(37, dtype=np.int32) % 4
    reader = DeviceReader({"image": images, "label": labels}, mesh)
    out, got_labels = features_lib.extract_split(embed, reader, 37, batch_size=8, mesh=mesh)
    expected = np.asarray(embed(jnp.asarray(images)))
    assert out.shape == (37, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_labels, labels)


def test_extract_split_rejects_non_2d_embeddings():
    mesh = sharding.make_mesh(1)
    reader = DeviceReader({"image": np.zeros((4, 2, 2), np.float32),
                           "label": np.zeros((4,), np.int32)}, mesh)
    with pytest.raises(ValueError, match=r"features \[batch, D\]"):
        features_lib.extract_split(lambda b: b, reader, 4, 4, mesh)


# ----------------------------------------------------------------------------- kNN

def test_knn_predictions_match_numpy_reference():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(300, 16)).astype(np.float32)
    train_y = rng.integers(0, 5, size=300)
    test = rng.normal(size=(100, 16)).astype(np.float32)
    for k, temperature in [(20, 0.1), (200, 0.1), (7, 0.5)]:
        ours = knn_lib.knn_predict(train, train_y, test, 5, k=k, temperature=temperature,
                                   chunk_size=32)  # 100 rows: the last chunk is padded
        ref = _numpy_knn(train, train_y, test, 5, k, temperature)
        np.testing.assert_array_equal(ours, ref)


def test_knn_caps_k_at_the_training_set_size():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(30, 8)).astype(np.float32)
    train_y = rng.integers(0, 3, size=30)
    test = rng.normal(size=(20, 8)).astype(np.float32)
    capped = knn_lib.knn_predict(train, train_y, test, 3, k=200)
    np.testing.assert_array_equal(capped, _numpy_knn(train, train_y, test, 3, 30, 0.1))


def test_knn_separable_problem_is_perfect():
    feats, labels = _blobs(40, 4, 8, seed=4)
    acc = knn_lib.knn_accuracy(feats[:100], labels[:100], feats[100:], labels[100:], 4, k=10)
    assert acc == 1.0


def test_knn_errors_name_the_field():
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="num_classes=2"):
        knn_lib.knn_accuracy(x, np.array([0, 1, 2, 0]), x, np.zeros(4), 2)
    with pytest.raises(ValueError, match="temperature=0"):
        knn_lib.knn_accuracy(x, np.zeros(4, int), x, np.zeros(4), 2, temperature=0.0)


# ----------------------------------------------------------------------------- linear probe

@pytest.mark.parametrize("name,overrides", [
    ("lbfgs", {}),
    ("simclr", {"epochs": 20}),
    ("moco", {"epochs": 10}),
])
def test_linear_probe_separable_problem_is_perfect(name, overrides):
    feats, labels = _blobs(60, 3, 6, seed=5)
    acc = lp.linear_probe_accuracy(feats[:120], labels[:120], feats[120:], labels[120:], 3,
                                   protocol=name, **overrides)
    assert acc == 1.0


def test_lbfgs_probe_matches_sklearn_logistic_regression_on_digits(digits_split):
    x_tr, y_tr, x_te, y_te = digits_split
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(x_tr), y_tr)
    sk_acc = clf.score(scaler.transform(x_te), y_te)
    ours = lp.linear_probe_accuracy(x_tr, y_tr, x_te, y_te, 10, protocol="lbfgs")
    assert abs(ours - sk_acc) <= 0.02, (ours, sk_acc)
    assert sk_acc > 0.9  # the reference itself is a sensible classifier on this split


def test_moco_schedule_steps_at_epochs_60_and_80():
    proto = lp.resolve_protocol("moco")
    n = 1000  # ceil(1000 / 256) = 4 steps per epoch, last batch smaller (no drop_last)
    spe = lp.steps_per_epoch(proto, n)
    assert spe == 4
    sched = lp.learning_rate_schedule(proto, n)
    lr_at_epoch = lambda e: float(sched(e * spe))
    assert lr_at_epoch(0) == pytest.approx(30.0)
    assert lr_at_epoch(59) == pytest.approx(30.0)
    assert float(sched(60 * spe - 1)) == pytest.approx(30.0)  # last step of epoch 59
    assert lr_at_epoch(60) == pytest.approx(3.0)
    assert lr_at_epoch(79) == pytest.approx(3.0)
    assert lr_at_epoch(80) == pytest.approx(0.3)


def test_simclr_schedule_is_linearly_scaled_cosine():
    proto = lp.resolve_protocol("simclr")
    n = 1000  # batch capped at 1000 -> LR 0.1 * 1000 / 256, 1 step per epoch, 90 steps
    sched = lp.learning_rate_schedule(proto, n)
    peak = 0.1 * 1000 / 256
    for step in (0, 30, 45, 89):
        assert float(sched(step)) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * step / 90)),
                                                   rel=1e-5, abs=1e-7)
    assert proto.nesterov and proto.init_std == 0.0 and proto.batch_size == 4096


def test_linear_probe_is_deterministic_given_the_seed():
    feats, labels = _blobs(30, 3, 5, seed=6, spread=2.0)
    fit = lambda seed: lp.fit_linear_probe(feats, labels, 3, "moco", seed=seed, epochs=3,
                                           batch_size=16).params["kernel"]
    np.testing.assert_array_equal(fit(0), fit(0))
    assert not np.array_equal(fit(0), fit(1))


def test_zero_init_probe_starts_from_zero():
    feats, labels = _blobs(10, 2, 4, seed=7)
    probe = lp.fit_linear_probe(feats, labels, 2, "simclr", epochs=1, learning_rate=1e-30)
    assert np.abs(probe.params["kernel"]).max() < 1e-20


def test_linear_probe_option_errors():
    x, y = _blobs(5, 2, 3, seed=8)
    with pytest.raises(ValueError, match="protocol='adam'"):
        lp.linear_probe_accuracy(x, y, x, y, 2, protocol="adam")
    with pytest.raises(ValueError, match="epochs=5 does not apply to protocol='lbfgs'"):
        lp.linear_probe_accuracy(x, y, x, y, 2, protocol="lbfgs", epochs=5)
    with pytest.raises(ValueError, match="num_classes=1"):
        lp.linear_probe_accuracy(x, y, x, y, 1, protocol="lbfgs")


# ----------------------------------------------------------------------------- few labels

def test_few_label_indices_counts_order_and_seed():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 20)
    np.random.default_rng(9).shuffle(labels)
    idx = protocol.few_label_indices(labels, per_class=10, seed=0)
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [10, 3, 10])
    np.testing.assert_array_equal(idx, protocol.few_label_indices(labels, 10, seed=0))
    assert not np.array_equal(idx, protocol.few_label_indices(labels, 10, seed=1))
    with pytest.raises(ValueError, match="few_labels_per_class=0"):
        protocol.few_label_indices(labels, 0, seed=0)


# ----------------------------------------------------------------------------- protocol

def _eval_cfg(**kw):
    cfg = ml_collections.ConfigDict(dict(
        knn_k=200, knn_temperature=0.1, few_labels_per_class=2, few_labels_seed=0,
        linear_protocol="lbfgs", linear_epochs=0, linear_batch_size=0, linear_lr=0.0,
        linear_weight_decay=-1.0))
    cfg.update(kw)
    return cfg


def test_evaluate_features_uses_one_subset_for_both_classifiers():
    feats, labels = _blobs(20, 3, 6, seed=10, spread=1.5)
    tr_x, tr_y, te_x, te_y = feats[:45], labels[:45], feats[45:], labels[45:]
    cfg = _eval_cfg()
    out = protocol.evaluate_features(tr_x, tr_y, te_x, te_y, 3, cfg)
    assert list(out) == ["knn_2", "knn_all", "linear_2", "linear_all"]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in out.values())
    subset = protocol.few_label_indices(tr_y, 2, 0)
    assert subset.size == 6
    # kNN on 6 examples with k capped at 6: the numpy reference on the same subset.
    ref_preds = _numpy_knn(tr_x[subset], tr_y[subset], te_x, 3, 6, 0.1)
    assert out["knn_2"] == pytest.approx(np.mean(ref_preds == te_y))
    assert out["linear_2"] == lp.linear_probe_accuracy(tr_x[subset], tr_y[subset], te_x, te_y, 3,
                                                       protocol="lbfgs")


def test_evaluate_features_forwards_sgd_overrides():
    feats, labels = _blobs(20, 3, 6, seed=11)
    cfg = _eval_cfg(linear_protocol="simclr", linear_epochs=3, linear_batch_size=8,
                    linear_lr=0.5, linear_weight_decay=0.0)
    assert protocol._linear_overrides(cfg) == dict(epochs=3, batch_size=8, learning_rate=0.5,
                                                   weight_decay=0.0)
    # L-BFGS ignores the SGD-only fields rather than failing on the config's defaults.
    assert protocol._linear_overrides(_eval_cfg(linear_epochs=90, linear_batch_size=4096)) == {}
    out = protocol.evaluate_features(feats[:45], labels[:45], feats[45:], labels[45:], 3, cfg)
    assert out["linear_all"] == 1.0 and out["knn_all"] == 1.0


def test_format_results_table():
    table = protocol.format_results_table({
        "simclr": {"knn_10": 0.5, "knn_all": 0.75, "linear_10": 0.8, "linear_all": 0.9125},
        "raw_pixels": {"knn_10": 0.25, "knn_all": 1.0},
    })
    lines = table.splitlines()
    assert lines[1].split() == ["representation", "knn_10", "knn_all", "linear_10", "linear_all"]
    assert lines[3].split() == ["simclr", "50.00", "75.00", "80.00", "91.25"]
    assert lines[4].split() == ["raw_pixels", "25.00", "100.00", "-", "-"]
    assert len({len(line) for line in lines[1:]}) == 1  # fixed width
