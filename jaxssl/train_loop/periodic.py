"""``Every(n)``: the schedule of a periodic action (log, checkpoint, evaluation).

The shape of levanter's ``every=N`` hooks: an action is due at every ``n``-th step, and at the
last step when ``at_last`` (a checkpoint and a log row of the final step are always wanted;
the final evaluation is the trainer's own). ``n = 0`` means never (``at_last`` aside).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Every:
    n: int
    total: int
    at_last: bool = False

    def __post_init__(self):
        if self.n < 0:
            raise ValueError(f"Every(n={self.n}): the period must be >= 0 (0: never)")

    def due(self, step: int) -> bool:
        """Is the action due once ``step`` optimizer steps are done?"""
        if step == self.total:
            return self.at_last
        return self.n > 0 and step % self.n == 0
