"""``python -m bench``: generate (or reuse) the data set, run every measurement against each
server in turn, each with fresh storage, and print the markdown comparison.

Exit status: 0 when every requested server ran and no request failed; 1 otherwise. A server that
cannot start is reported as FAILED in the table, never as missing numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio

from bench import scenarios
from bench.data import SCALES, BenchData, load_or_generate
from bench.report import DICOMVAULT, ORTHANC, machine_details, markdown
from bench.results import Measurement, combine_runs
from bench.servers import (
    RunningServer,
    ServerFailed,
    dicomvault_server,
    dicomvault_version,
    orthanc_server,
    preflight,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PHASES = ("ingest", "qido", "wado", "metadata", "frames", "rendered", "large")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument(
        "--servers",
        default=f"{DICOMVAULT},{ORTHANC}",
        help="comma-separated, from: dicomvault, Orthanc (case-insensitive)",
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {PHASES}"
    )
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "bench" / ".data")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / ".results")
    parser.add_argument("--work-dir", type=Path, default=None, help="server storage (temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="measure every server this many times (fresh storage each time); report medians",
    )
    parser.add_argument(
        "--dicomvault-arg",
        action="append",
        default=[],
        help="extra argument for `dicomvault serve` (repeatable)",
    )
    parser.add_argument(
        "--dicomvault-header",
        action="append",
        default=[],
        help="'Name: value' header sent to dicomvault, e.g. an Authorization header",
    )
    return parser.parse_args(argv)


def _headers(raw: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition(":")
        if not sep:
            raise SystemExit(f"--dicomvault-header needs 'Name: value', got {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def _servers(raw: str) -> list[str]:
    known = {DICOMVAULT.lower(): DICOMVAULT, ORTHANC.lower(): ORTHANC}
    chosen = []
    for name in raw.split(","):
        if name.strip().lower() not in known:
            raise SystemExit(f"unknown server {name!r}; choose from {sorted(known.values())}")
        chosen.append(known[name.strip().lower()])
    return chosen


async def run_phases(
    server: RunningServer, data: BenchData, rounds: scenarios.Rounds, phases: list[str]
) -> list[Measurement]:
    out: list[Measurement] = []
    for phase in phases:
        print(f"  [{server.name}] {phase} …", file=sys.stderr, flush=True)
        if phase == "ingest":
            out += await scenarios.measure_ingest(server, data)
        elif phase == "qido":
            out += await scenarios.measure_qido(server, data, rounds)
        elif phase == "wado":
            out += await scenarios.measure_wado(server, data, rounds)
        elif phase == "metadata":
            out += await scenarios.measure_metadata(server, data, rounds)
        elif phase == "frames":
            out += await scenarios.measure_frames(server, data, rounds)
        elif phase == "rendered":
            out += await scenarios.measure_rendered(server, data, rounds)
        elif phase == "large":
            out += await scenarios.measure_large(server, data)
    return out


def _starter(
    name: str, args: argparse.Namespace
) -> Callable[[Path], contextlib.AbstractContextManager[RunningServer]]:
    if name == ORTHANC:
        return orthanc_server
    headers = _headers(args.dicomvault_header)

    def start(work: Path) -> contextlib.AbstractContextManager[RunningServer]:
        return dicomvault_server(work, REPO_ROOT, args.dicomvault_arg, headers)

    return start


@contextlib.contextmanager
def _work_root(explicit: Path | None) -> Iterator[Path]:
    if explicit is not None:
        explicit.mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="bench-", dir=explicit))
        return
    with tempfile.TemporaryDirectory(prefix="dicomvault-bench-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers = _servers(args.servers)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(phases) - set(PHASES):
        raise SystemExit(f"unknown phases: {sorted(unknown)}")
    if "ingest" not in phases and phases:
        print("note: without 'ingest' the servers are empty; reads will fail", file=sys.stderr)
    print(f"data set ({args.scale}) …", file=sys.stderr, flush=True)
    data = load_or_generate(args.data_dir, args.scale, args.seed)
    rounds = scenarios.ROUNDS[args.scale]

    results: dict[str, list[Measurement]] = {}
    failures: dict[str, str] = {}
    notes: dict[str, str] = {}
    versions: dict[str, str] = {DICOMVAULT: dicomvault_version(), ORTHANC: "not run"}
    started = datetime.datetime.now(datetime.UTC)
    runs: dict[str, list[list[Measurement]]] = {}
    with _work_root(args.work_dir) as work_root:
        for run in range(1, max(args.runs, 1) + 1):
            for name in servers:
                if name in failures:
                    continue
                print(f"{name}: run {run}, fresh storage …", file=sys.stderr, flush=True)
                storage = work_root / f"{name.lower()}-{run}"
                try:
                    with _starter(name, args)(storage) as server:
                        versions[name] = server.version
                        if server.settings_note:
                            notes[name] = server.settings_note
                        preflight(server)
                        measured = anyio.run(run_phases, server, data, rounds, phases)
                        runs.setdefault(name, []).append(measured)
                except ServerFailed as exc:
                    failures[name] = str(exc)
                    print(f"{name}: FAILED\n{exc}", file=sys.stderr, flush=True)
                finally:
                    # ~4 GB per server and run at full scale: not kept for the next one.
                    shutil.rmtree(storage / "data", ignore_errors=True)
                    shutil.rmtree(storage / "storage", ignore_errors=True)
    for name, measured_runs in runs.items():
        if name not in failures:
            results[name] = combine_runs(measured_runs)

    header = {
        "date (UTC)": started.strftime("%Y-%m-%d %H:%M"),
        "runs": f"{max(args.runs, 1)} per server, alternating; medians reported",
        "scale": (
            f"{args.scale}: {len(data.instances)} instances, "
            f"{len({i.study_uid for i in data.instances})} studies, "
            f"{data.total_bytes / 1e6:.0f} MB, "
            f"{data.total_bytes / len(data.instances) / 1e3:.0f} KB average; "
            f"large instance {data.large[0].number_of_frames} frames, "
            f"{data.large[0].size / 1e6:.0f} MB"
        ),
        "servers": "; ".join(versions[s] for s in servers),
        **{f"{name} settings": note for name, note in notes.items()},
        **machine_details(),
        "client": "httpx AsyncClient, HTTP/1.1 keep-alive, same machine (127.0.0.1)",
    }
    report = markdown(results, failures, header)
    print(report)
    _save(args.results_dir, started, args.scale, report, results, failures, header)
    errors = sum(m.errors for ms in results.values() for m in ms)
    if failures or errors:
        print(
            f"bench: {len(failures)} server(s) failed, {errors} request error(s)",
            file=sys.stderr,
        )
        return 1
    return 0


def _save(
    directory: Path,
    started: datetime.datetime,
    scale: str,
    report: str,
    results: dict[str, list[Measurement]],
    failures: dict[str, str],
    header: dict[str, str],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{started.strftime('%Y%m%dT%H%M%S')}-{scale}"
    stem.with_suffix(".md").write_text(report)
    doc = {
        "header": header,
        "failures": failures,
        "results": {s: [dataclasses.asdict(m) for m in ms] for s, ms in results.items()},
    }
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str))
    print(f"results saved to {stem}.md and .json", file=sys.stderr)
