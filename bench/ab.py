"""``python -m bench.ab --base REV``: a change's effect as a ratio, measured in one run.

The old code (a git worktree of ``REV``) and the new code (this checkout) run side by side as two
dicomvault servers with the same data and the same client, and every workload alternates between
them round by round (ABBA…), so the noise of a small shared machine hits both alike. The result
is new/old per workload, the median of the rounds. Both servers use this checkout's ``.venv``:
a change of dependencies is not what this measures.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from bench import dicomweb, scenarios
from bench.data import BenchData, load_or_generate
from bench.measure import Stopwatch, latency_stats
from bench.servers import RunningServer, dicomvault_server, preflight
from dicomvault.testing.synthetic import GeneratedInstance

REPO_ROOT = Path(__file__).resolve().parent.parent
PRELOAD = 800  # instances stored in both servers before the read workloads
STOW_SLICE = 120  # instances per STOW round, a fresh slice each round


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str
    better: str  # "higher" or "lower"
    run: Callable[[RunningServer, BenchData, int], Awaitable[float]]


async def _stow(
    server: RunningServer, slice_: Sequence[GeneratedInstance], c: int, per: int
) -> float:
    batches = [slice_[i : i + per] for i in range(0, len(slice_), per)]
    async with scenarios.client_for(server, c) as client:
        with Stopwatch() as sw:
            outcomes = await scenarios.run_pool(
                batches,
                c,
                lambda b: dicomweb.stow(
                    client, server.dicomweb_root, [i.path for i in b if i.path]
                ),
            )
    if not all(o.ok for o in outcomes):
        raise RuntimeError(f"{server.name}: a STOW-RS request failed")
    return len(slice_) / sw.seconds


def stow(concurrency: int, per_request: int) -> Workload:
    async def run(server: RunningServer, data: BenchData, round_: int) -> float:
        start = PRELOAD + round_ * STOW_SLICE
        return await _stow(
            server, data.instances[start : start + STOW_SLICE], concurrency, per_request
        )

    return Workload(
        f"STOW-RS, {per_request} per request, concurrency {concurrency}",
        "instances/s",
        "higher",
        run,
    )


async def _qido_p50(server: RunningServer, data: BenchData, _round: int) -> float:
    patients = sorted({i.patient_id for i in data.instances[:PRELOAD]})
    urls = [f"{server.dicomweb_root}/studies?PatientID={p}" for p in patients]
    async with scenarios.client_for(server, 1) as client:
        latencies, errors, _counts = await scenarios._latency_series(client, urls, 60, 5)
    if errors:
        raise RuntimeError(f"{server.name}: a QIDO-RS request failed")
    return latency_stats(latencies).p50_ms


def wado(concurrency: int) -> Workload:
    async def run(server: RunningServer, data: BenchData, _round: int) -> float:
        sample = data.instances[:PRELOAD:4][:200]
        headers = {"Accept": dicomweb.ACCEPT_DICOM, "Accept-Encoding": "identity"}
        got, seconds = await scenarios._retrieve_all(server, sample, concurrency, headers)
        if any(isinstance(g, str) for g in got):
            raise RuntimeError(f"{server.name}: a WADO-RS request failed")
        delivered = sum(g.decoded_bytes for g in got if isinstance(g, dicomweb.Fetched))
        return delivered / seconds / 1e6

    return Workload(f"WADO-RS instances, concurrency {concurrency}", "MB/s", "higher", run)


RENDER_SLICE = 40  # CT instances rendered per round, each for the first time (cold)


async def _rendered_cold_p95(server: RunningServer, data: BenchData, round_: int) -> float:
    ct = [i for i in data.instances[:PRELOAD] if i.modality == "CT"]
    part = ct[round_ * RENDER_SLICE : (round_ + 1) * RENDER_SLICE]
    if len(part) < RENDER_SLICE:
        raise RuntimeError("not enough CT instances for another cold rendering round")
    urls = [
        dicomweb.instance_url(server.dicomweb_root, i.study_uid, i.series_uid, i.sop_uid)
        + "/frames/1/rendered"
        for i in part
    ]
    async with scenarios.client_for(server, 1) as client:
        times = await scenarios._rendered_round(client, urls)
    if times.errors:
        raise RuntimeError(f"{server.name}: a rendered request failed: {times.first_failure}")
    return latency_stats(times.latencies).p95_ms


WORKLOADS: dict[str, Workload] = {
    "stow1c1": stow(1, 1),
    "stow1c8": stow(8, 1),
    "stow20c4": stow(4, 20),
    "qido": Workload("QIDO-RS studies?PatientID=X p50", "ms", "lower", _qido_p50),
    "wado1": wado(1),
    "wado4": wado(4),
    "rendered": Workload("rendered 512x512 CT frame, cold, p95", "ms", "lower", _rendered_cold_p95),
}


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A detached git worktree of ``revision``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="dicomvault-ab-") as tmp:
        path = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), revision],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)],
                cwd=REPO_ROOT,
                check=False,
                capture_output=True,
            )


async def _preload(server: RunningServer, data: BenchData) -> None:
    await _stow(server, data.instances[:PRELOAD], 4, 20)


async def compare(
    old: RunningServer, new: RunningServer, data: BenchData, names: list[str], rounds: int
) -> list[tuple[Workload, list[float], list[float]]]:
    await _preload(old, data)
    await _preload(new, data)
    results = []
    for name in names:
        workload = WORKLOADS[name]
        print(f"  {workload.name} …", file=sys.stderr, flush=True)
        values: dict[str, list[float]] = {"old": [], "new": []}
        for round_ in range(rounds):
            order = (
                [("old", old), ("new", new)] if round_ % 2 == 0 else [("new", new), ("old", old)]
            )
            for label, server in order:
                values[label].append(await workload.run(server, data, round_))
        results.append((workload, values["old"], values["new"]))
    return results


def report(
    revision: str, results: list[tuple[Workload, list[float], list[float]]], rounds: int
) -> str:
    lines = [
        f"new (this checkout) / old ({revision}), median of {rounds} alternating rounds",
        "",
        "| workload | unit | old | new | new / old | better |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for workload, old, new in results:
        a, b = statistics.median(old), statistics.median(new)
        cells = [workload.name, workload.unit, f"{a:.3g}", f"{b:.3g}", f"{b / a:.2f}"]
        lines.append("| " + " | ".join([*cells, workload.better]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--base", required=True, help="git revision of the old code")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"from {list(WORKLOADS)}")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "bench" / ".data")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    if unknown := set(names) - set(WORKLOADS):
        raise SystemExit(f"unknown workloads: {sorted(unknown)}")
    needed = PRELOAD + args.rounds * STOW_SLICE
    data = load_or_generate(args.data_dir, "full", 0)
    if len(data.instances) < needed:
        raise SystemExit(f"{args.rounds} rounds need {needed} instances")
    with (
        worktree(args.base) as base,
        tempfile.TemporaryDirectory(prefix="dicomvault-ab-") as tmp,
        dicomvault_server(Path(tmp) / "old", REPO_ROOT, source=base / "src") as old,
        dicomvault_server(Path(tmp) / "new", REPO_ROOT) as new,
    ):
        preflight(old)
        preflight(new)
        results = anyio.run(compare, old, new, data, names, args.rounds)
    print(report(args.base, results, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
