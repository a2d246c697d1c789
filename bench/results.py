"""What a bench run produces: one ``Measurement`` per metric per server, and the targets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``ratio`` compares dicomvault with Orthanc (dicomvault / Orthanc),
    ``limit`` is an absolute upper bound on dicomvault's own value."""

    ratio: float | None = None
    limit: float | None = None

    def describe(self, better: Better, unit: str) -> str:
        parts = []
        if self.ratio is not None:
            parts.append(f"{'≥' if better == 'higher' else '≤'} {self.ratio:g}x")
        if self.limit is not None:
            parts.append(f"< {self.limit:g} {unit}")
        return ", ".join(parts)

    def met(self, better: Better, value: float | None, ratio: float | None) -> bool | None:
        """None when it cannot be judged (a missing value)."""
        verdicts: list[bool] = []
        if self.ratio is not None:
            if ratio is None or math.isnan(ratio):
                return None
            verdicts.append(ratio >= self.ratio if better == "higher" else ratio <= self.ratio)
        if self.limit is not None:
            if value is None or math.isnan(value):
                return None
            verdicts.append(value < self.limit)
        return all(verdicts) if verdicts else None


@dataclass(frozen=True)
class Measurement:
    """One number for one server. ``errors`` > 0 makes the number suspect and the run fail."""

    key: str
    group: str
    label: str
    unit: str
    better: Better
    value: float | None
    errors: int = 0
    note: str = ""
    target: Target | None = None
