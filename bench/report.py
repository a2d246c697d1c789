"""Machine details and the markdown report: dicomvault, Orthanc and their ratio side by side."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from bench.results import Measurement

DICOMVAULT = "dicomvault"
ORTHANC = "Orthanc"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_details() -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": cpu_model(),
        "cores (usable / logical)": f"{usable} / {os.cpu_count()}",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "OS": _os_release(),
        "Python": platform.python_version(),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass(frozen=True)
class Row:
    measurement: Measurement
    by_server: dict[str, Measurement]

    @property
    def ratio(self) -> float | None:
        dv = self.by_server.get(DICOMVAULT)
        ot = self.by_server.get(ORTHANC)
        if dv is None or ot is None or dv.value is None or ot.value is None:
            return None
        if not (math.isfinite(dv.value) and math.isfinite(ot.value)) or ot.value == 0:
            return None
        return dv.value / ot.value


def _rows(results: dict[str, list[Measurement]]) -> list[Row]:
    order: dict[str, Measurement] = {}
    for measurements in results.values():
        for m in measurements:
            order.setdefault(m.key, m)
    return [
        Row(m, {s: x for s, ms in results.items() for x in ms if x.key == m.key})
        for m in order.values()
    ]


def _cell(row: Row, server: str, failures: dict[str, str]) -> str:
    if server in failures:
        return "FAILED"
    m = row.by_server.get(server)
    if m is None:
        return "not run"
    text = _fmt(m.value)
    return f"{text} ⚠ {m.errors} errors" if m.errors else text


def _verdict(row: Row) -> str:
    target = row.measurement.target
    if target is None:
        return ""
    if any(m.errors for m in row.by_server.values()):
        return "? (errors)"
    dv = row.by_server.get(DICOMVAULT)
    met = target.met(row.measurement.better, dv.value if dv else None, row.ratio)
    return {True: "yes", False: "**no**", None: "?"}[met]


def markdown(
    results: dict[str, list[Measurement]],
    failures: dict[str, str],
    header: dict[str, str],
) -> str:
    """The report: run details, then one table per group, then notes and failures."""
    lines = ["# dicomvault vs Orthanc — DICOMweb benchmark", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines.append("")
    servers = [DICOMVAULT, ORTHANC]
    group = None
    rows = _rows(results)
    for row in rows:
        m = row.measurement
        if m.group != group:
            group = m.group
            lines += ["", f"## {group}", ""]
            lines.append(
                "| measurement | unit | dicomvault | Orthanc | ratio dv/Orthanc | target | met |"
            )
            lines.append("| --- | --- | ---: | ---: | ---: | --- | --- |")
        target = m.target.describe(m.better, m.unit) if m.target else ""
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        cells = [_cell(row, s, failures) for s in servers]
        verdict = _verdict(row)
        lines.append(
            f"| {m.label} | {m.unit} | {cells[0]} | {cells[1]} | {ratio} | {target} | {verdict} |"
        )
    lines += ["", "## Notes", ""]
    seen: set[tuple[str, str]] = set()
    for row in rows:
        for server, m in row.by_server.items():
            pair = (server, m.key.rsplit(".", 1)[0] + m.note)  # p50/p95 pairs share a note
            if m.note and pair not in seen:
                seen.add(pair)
                lines.append(f"- {server}, {m.group} / {m.label}: {m.note}")
    if failures:
        lines += ["", "## FAILED servers", ""]
        for server, reason in failures.items():
            lines += [f"### {server}", "", "```", reason.strip(), "```", ""]
    return "\n".join(lines) + "\n"
