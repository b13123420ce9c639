"""Weighted k-nearest-neighbour classifier on frozen features (Wu et al., 2018).

The kNN monitor of instance discrimination (InstDisc), used by MoCo, solo-learn and lightly:

    f <- f / ||f||_2                        (train and test features)
    s_ij = <q_i, f_j>                       (cosine similarity, test i x train j)
    N_k(i) = top-k train indices by s_ij
    w_ij = exp(s_ij / T)                    (T = 0.1)
    score_ic = sum_{j in N_k(i), y_j = c} w_ij
    y_hat_i = argmax_c score_ic

k defaults to 200 (as in the paper and solo-learn) and is capped at the number of training
examples. The similarity matrix is computed in chunks of test rows, so memory is
O(chunk_size x N_train) rather than O(N_test x N_train).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _check_inputs(train_feats, train_labels, test_feats, num_classes, k, temperature, chunk_size):
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"knn: train_feats {train_feats.shape} and test_feats {test_feats.shape} "
                         "must be [N, D] arrays with the same feature dimension D")
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"knn: train_labels shape {train_labels.shape} must be "
                         f"({train_feats.shape[0]},), one label per training row")
    if train_feats.shape[0] == 0:
        raise ValueError("knn: train_feats has 0 rows; pass at least one training example")
    if train_labels.size and (train_labels.min() < 0 or train_labels.max() >= num_classes):
        raise ValueError(f"knn: train labels span [{train_labels.min()}, {train_labels.max()}] but "
                         f"num_classes={num_classes}; labels must be integers in [0, num_classes)")
    if k <= 0:
        raise ValueError(f"knn k={k} must be a positive number of neighbours (paper: 200)")
    if temperature <= 0:
        raise ValueError(f"knn temperature={temperature} must be > 0 (paper: 0.1)")
    if chunk_size <= 0:
        raise ValueError(f"knn chunk_size={chunk_size} must be a positive number of test rows")


def _l2_normalize(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("num_classes", "k"))
def _predict_chunk(test_BxD, train_NxD, train_labels_N, *, num_classes: int, k: int,
                   temperature: float) -> jax.Array:
    """Predicted labels ``[chunk]`` int32 for a chunk of already-normalised test features."""
    sim_BxN = jnp.matmul(test_BxD, train_NxD.T, precision=jax.lax.Precision.HIGHEST)
    top_sim_BxK, top_idx_BxK = jax.lax.top_k(sim_BxN, k)
    weights_BxK = jnp.exp(top_sim_BxK / temperature)
    labels_BxK = train_labels_N[top_idx_BxK]
    rows_Bx1 = jnp.arange(labels_BxK.shape[0])[:, None]
    # Scatter-add the weights into their classes: memory B x C, not B x k x C (a one-hot).
    scores_BxC = jnp.zeros((labels_BxK.shape[0], num_classes), jnp.float32)
    scores_BxC = scores_BxC.at[rows_Bx1, labels_BxK].add(weights_BxK)
    return jnp.argmax(scores_BxC, axis=-1).astype(jnp.int32)


def knn_predict(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
                num_classes: int, k: int = 200, temperature: float = 0.1,
                chunk_size: int = 1024) -> np.ndarray:
    """Weighted-kNN predictions ``[N_test]`` int32 (see the module docstring for the rule).

    Args:
      train_feats: ``[N_train, D]`` float features (need not be normalised).
      train_labels: ``[N_train]`` integer labels in ``[0, num_classes)``.
      test_feats: ``[N_test, D]`` float features.
      num_classes: number of classes C.
      k: neighbours; capped at ``N_train``.
      temperature: T in ``exp(sim / T)``.
      chunk_size: test rows per similarity block (memory ``chunk_size x N_train``).
    """
    train_feats = np.asarray(train_feats, np.float32)
    test_feats = np.asarray(test_feats, np.float32)
    train_labels = np.asarray(train_labels)
    _check_inputs(train_feats, train_labels, test_feats, num_classes, k, temperature, chunk_size)
    k = min(int(k), train_feats.shape[0])
    num_test = test_feats.shape[0]
    if num_test == 0:
        return np.zeros((0,), np.int32)
    chunk = min(int(chunk_size), num_test)
    train_n = _l2_normalize(jnp.asarray(train_feats))
    labels_n = jnp.asarray(train_labels, jnp.int32)
    preds = []
    for start in range(0, num_test, chunk):
        block = test_feats[start:start + chunk]
        valid = block.shape[0]
        if valid < chunk:  # pad the last chunk: one compiled shape for every chunk
            block = np.concatenate([block, np.zeros((chunk - valid, block.shape[1]), np.float32)])
        pred = _predict_chunk(_l2_normalize(jnp.asarray(block)), train_n, labels_n,
                              num_classes=int(num_classes), k=k, temperature=float(temperature))
        preds.append(np.asarray(pred)[:valid])
    return np.concatenate(preds)


def knn_accuracy(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
                 test_labels: np.ndarray, num_classes: int, k: int = 200,
                 temperature: float = 0.1, chunk_size: int = 1024) -> float:
    """Top-1 accuracy (python float in [0, 1]) of :func:`knn_predict` on ``test_labels [N_test]``."""
    test_labels = np.asarray(test_labels)
    if test_labels.shape != (np.shape(test_feats)[0],):
        raise ValueError(f"knn: test_labels shape {test_labels.shape} must be "
                         f"({np.shape(test_feats)[0]},), one label per test row")
    if test_labels.size == 0:
        raise ValueError("knn: test set is empty; accuracy is undefined")
    preds = knn_predict(train_feats, train_labels, test_feats, num_classes, k, temperature,
                        chunk_size)
    return float(np.mean(preds == test_labels))
