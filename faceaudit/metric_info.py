"""What a reported number is, in words: the entry every metric object carries.

A leaf of the package (no jax, nothing of faceaudit's), so that the core's metric classes
can carry their entries and the catalogue, the report and the command line's help can read
them without importing the numerics. Each entry says what the number is (label), which direction is better, its range (so an
interval never leaves it), how to show it, *what its interval is an interval of* (the
estimand), whether groups can be ranked by it at real audit sizes and why, and whether
``faceaudit metrics`` and the measure stage compute it by default. The distribution and
diversity metrics carry theirs on their class (``_group_metrics``); ``tables.catalogue``
collects them with the entries of the per-image means and accuracies.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    higher_is_better: bool
    kind: str  # distribution | diversity | identity | faithfulness
    estimand: str
    comparable: str  # how groups of different sizes compare (shown beside the number)
    bounds: tuple[float, float] = (-math.inf, math.inf)
    scale: float = 1.0  # display multiplier (KID is shown x1e3, as is customary)
    rankable: bool = True  # False: shown for reference, never used to rank groups
    default: bool = False  # computed by `faceaudit metrics` and the measure stage unless --metrics says otherwise

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def shown_label(self) -> str:
        return self.label + (f" (x{self.scale:g})" if self.scale != 1.0 else "")

    def clip(self, low: float, high: float) -> tuple[float, float]:
        lo, hi = self.bounds
        return max(low, lo), min(high, hi)


COMMON_SIZE = "compared at a common size: the smallest group's, averaged over random subsets of larger groups"
PROPORTION = (0.0, 1.0)
