"""What a bench run produces: one ``Measurement`` per metric per server, and the targets."""

from __future__ import annotations

import dataclasses
import math
import statistics
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


def combine_runs(runs: list[list[Measurement]]) -> list[Measurement]:
    """One measurement per key from several runs of one server: the median value (this
    machine is noisy; the issue's reference figures are medians too), the errors of all runs
    added up, and the spread in the note. Keys keep the order of the first run."""
    if len(runs) == 1:
        return list(runs[0])
    by_key: dict[str, list[Measurement]] = {}
    for run in runs:
        for measurement in run:
            by_key.setdefault(measurement.key, []).append(measurement)
    combined = []
    for same in by_key.values():
        first = same[0]
        values = sorted(m.value for m in same if m.value is not None and not math.isnan(m.value))
        median = statistics.median(values) if values else None
        spread = f"median of {len(values)} runs"
        if values:
            spread += f" ({values[0]:.3g}-{values[-1]:.3g})"
        note = f"{first.note}; {spread}" if first.note else spread
        combined.append(
            dataclasses.replace(first, value=median, errors=sum(m.errors for m in same), note=note)
        )
    return combined
