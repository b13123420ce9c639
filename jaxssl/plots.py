"""Pictures of a run: training curves from ``metrics.jsonl`` and a 2-D embedding map.

* :func:`plot_run` reads ``WORKDIR/metrics.jsonl`` (one JSON object per logged step, written
  by :class:`jaxssl.metrics.MetricWriter`) and draws four panels into one PNG: the loss, the
  learning rate, the throughput (``img_per_s`` / ``tok_per_s``) and every evaluation scalar
  (keys starting with ``eval/``) against the step.
* :func:`save_embedding_map` draws a t-SNE map (van der Maaten & Hinton 2008;
  ``sklearn.manifold.TSNE`` with a fixed ``random_state``, PCA initialisation) of held-out
  features coloured by class, one panel per representation side by side (e.g. pretrained
  vs random-init backbone).

matplotlib is imported only inside these functions and drawn through its Agg canvas
(``matplotlib.figure.Figure`` + ``backends.backend_agg``), so nothing here touches pyplot's
global backend or needs a display. Install it with ``pip install -e '.[plots]'``.
"""
from __future__ import annotations

import json
import math
import os
from typing import Mapping

import numpy as np

THROUGHPUT_KEYS = ("img_per_s", "tok_per_s")
EVAL_PREFIX = "eval/"


def _figure(width: float, height: float):
    from jaxssl import optional

    optional.require("matplotlib", "drawing pictures (jaxssl.plots)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def read_metrics(path: str) -> list[dict]:
    """Rows of a ``metrics.jsonl`` file, sorted by step (stable: a resumed run's later row for
    the same step and keys comes after the earlier one). Blank and truncated lines (a run
    killed mid-write) are skipped."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
    return sorted(rows, key=lambda r: r["step"])


def series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` float64 of the rows that hold a finite ``key``; for a step logged
    more than once (a resumed run) the last value wins."""
    by_step: dict[int, float] = {}
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            by_step[int(row["step"])] = float(value)
    steps = np.asarray(sorted(by_step), np.float64)
    return steps, np.asarray([by_step[int(s)] for s in steps], np.float64)


def _panel(ax, rows, keys, title, ylabel, markers=False, skip_first=False):
    drawn = 0
    for key in keys:
        x, y = series(rows, key)
        if skip_first and x.size > 1:
            x, y = x[1:], y[1:]
        if x.size == 0:
            continue
        ax.plot(x, y, marker="o" if markers or x.size == 1 else None, markersize=3, label=key)
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if drawn == 0:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes,
                color="gray")
        return
    if drawn > 1:
        ax.legend(fontsize=7)


def plot_run(workdir: str, out: str | None = None) -> str:
    """Draw the curves of the run in ``workdir`` into a PNG; returns its path.

    Panels: loss; learning rate; throughput (``img_per_s`` or ``tok_per_s``; the first
    logged value is left out when there are more, since its interval includes compilation);
    evaluation (every ``eval/...`` key, one line each,
    with markers). ``out`` defaults to ``WORKDIR/curves.png``.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; WORKDIR must be a run directory "
                                "written by python -m jaxssl.main --workdir=WORKDIR")
    rows = read_metrics(path)
    if not rows:
        raise ValueError(f"{path} holds no metric rows yet; plot after the first logged step")
    keys = sorted({k for row in rows for k in row})
    eval_keys = [k for k in keys if k.startswith(EVAL_PREFIX)]
    fig = _figure(11, 7.5)
    axes = fig.subplots(2, 2)
    _panel(axes[0, 0], rows, ["loss"], "training loss", "loss")
    _panel(axes[0, 1], rows, ["lr"], "learning rate", "lr")
    _panel(axes[1, 0], rows, [k for k in THROUGHPUT_KEYS if k in keys] or ["img_per_s"],
           "throughput (first interval, with compilation, left out)", "items / s",
           skip_first=True)
    _panel(axes[1, 1], rows, eval_keys, "evaluation", "value", markers=True)
    fig.suptitle(os.path.basename(os.path.abspath(workdir)))
    out = out or os.path.join(workdir, "curves.png")
    _savefig(fig, out)
    return out


def tsne_2d(features: np.ndarray, random_state: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of ``features`` ``[N, D]`` -> ``[N, 2]`` float64 (sklearn, PCA init).

    The perplexity is capped at ``(N - 1) / 3`` so that the ``3 * perplexity`` nearest
    neighbours t-SNE uses exist (sklearn refuses ``perplexity >= N``). Features are
    L2-normalised first: the cosine geometry of the contrastive loss and of the kNN monitor.
    Runs single-threaded (``threadpoolctl``): for the few thousand points of a held-out set
    that takes seconds, while OpenMP threads competing with busy cores (JAX, other jobs) were
    measured 7x slower (50 s vs 7 s for 540 points on 2 loaded cores).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"t-SNE needs features [N >= 4, D], got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = min(float(perplexity), (x.shape[0] - 1) / 3.0)
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca",
                    random_state=random_state).fit_transform(x)


def save_embedding_map(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str, *,
                       random_state: int = 0, perplexity: float = 30.0,
                       class_names: list[str] | None = None) -> str:
    """Save side-by-side 2-D t-SNE maps of labelled features as a PNG; returns ``path``.

    Args:
      panels: ``{title: (features float [N, D], labels int [N])}``, one panel per entry in
        order, e.g. ``{"SimCLR": (f, y), "random init": (f0, y)}``.
      path: the PNG to write.
      random_state: t-SNE seed (fixed, so the picture is reproducible).
      perplexity: t-SNE perplexity (capped for small N, see :func:`tsne_2d`).
      class_names: legend names of the classes (default: the label ids).
    """
    if not panels:
        raise ValueError("save_embedding_map needs at least one panel {title: (features, labels)}")
    fig = _figure(5.0 * len(panels) + 1.2, 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    all_labels = np.unique(np.concatenate([np.asarray(y).reshape(-1) for _, y in panels.values()]))
    cmap = _class_colours(len(all_labels))
    for ax, (title, (feats, labels)) in zip(axes, panels.items()):
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(feats):
            raise ValueError(f"panel {title!r}: {len(feats)} feature rows but {len(labels)} labels")
        xy = tsne_2d(feats, random_state=random_state, perplexity=perplexity)
        for colour, label in zip(cmap, all_labels):
            sel = labels == label
            name = class_names[int(label)] if class_names is not None else str(int(label))
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=colour, label=name)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2,
                    title="class")
    _savefig(fig, path)
    return path


def _savefig(fig, path) -> None:
    """``fig`` written to ``path``, a local file or a URL (:mod:`jaxssl.paths`), in the format
    its extension names (``.png``, ``.pdf``, ``.svg``...; PNG without one)."""
    import io

    from jaxssl import paths

    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png")
    paths.write_bytes(path, buffer.getvalue())


def _class_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


__all__ = ["plot_run", "save_embedding_map", "read_metrics", "series", "tsne_2d"]
