"""Collapse monitor: warn, with the step, when a contrastive run stops learning anything.

Two symptoms (known traps of contrastive training: *loss flat at ln(2N-1): collapse or a
masking bug*):

* **Loss stuck at chance.** When every embedding is the same (or the similarities carry no
  information), each anchor's softmax over its candidates is uniform and the loss equals the
  log of the number of candidates:

  - SimCLR NT-Xent over 2N views (N = global batch), averaged over anchors: ``ln(2N - 1)``;
  - MoCo v2 InfoNCE with a queue of K keys (1 positive + K negatives): ``ln(K + 1)``;
  - MoCo v3 symmetric ``ctr(q1, k2) + ctr(q2, k1)``, each ``2T * CE`` over N keys:
    ``4 T ln(N)``.

  Each method gives its value with ``chance_loss()`` (:class:`jaxssl.methods.base.Method`;
  ``None``: no loss check), the one home of these formulas. The warning fires when the logged loss has stayed within ``rel_tol`` of that
  value for ``patience`` consecutive logged steps.
* **Embedding spread collapses.** ``embedding_std`` (a method's metric: the per-dimension
  standard deviation of the L2-normalised embeddings times sqrt(d), about 1 for embeddings
  spread over the sphere and 0 when they all coincide; the collapse measure of SimSiam,
  Chen & He 2021, Sec. 4.1) below ``std_floor``.

Each symptom warns once when it starts and again only after it has cleared.
"""
from __future__ import annotations

import math
from typing import Mapping


class CollapseMonitor:
    """Feed it every logged step's scalars; it returns warning lines (empty when healthy)."""

    def __init__(self, chance: float | None, rel_tol: float = 0.01, patience: int = 3,
                 std_floor: float = 0.05):
        if rel_tol <= 0 or patience < 1 or std_floor < 0:
            raise ValueError(f"CollapseMonitor(rel_tol={rel_tol}, patience={patience}, "
                             f"std_floor={std_floor}): need rel_tol > 0, patience >= 1, std_floor >= 0")
        self.chance = chance
        self.rel_tol = rel_tol
        self.patience = patience
        self.std_floor = std_floor
        self._near = 0
        self._loss_warned = False
        self._std_warned = False

    def update(self, step: int, scalars: Mapping[str, float]) -> list[str]:
        out = []
        loss = scalars.get("loss")
        if self.chance is not None and loss is not None and math.isfinite(loss):
            near = abs(loss - self.chance) <= self.rel_tol * self.chance
            self._near = self._near + 1 if near else 0
            if self._near >= self.patience and not self._loss_warned:
                self._loss_warned = True
                out.append(
                    f"warning: possible collapse at step {step}: the loss {loss:.4f} has stayed "
                    f"within {100 * self.rel_tol:g}% of the chance value {self.chance:.4f} (uniform "
                    f"similarities) for {self._near} logged steps; check the learning rate, the "
                    "augmentations and the positive-pair masking")
            elif not near:
                self._loss_warned = False
        std = scalars.get("embedding_std")
        if std is not None and math.isfinite(std):
            if std < self.std_floor and not self._std_warned:
                self._std_warned = True
                out.append(
                    f"warning: possible collapse at step {step}: embedding_std {std:.4f} is below "
                    f"{self.std_floor:g} (all embeddings close to one point; about 1 when spread)")
            elif std >= self.std_floor:
                self._std_warned = False
        return out
