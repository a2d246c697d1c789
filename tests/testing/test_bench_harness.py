"""The bench harness's own logic: multipart framing, percentiles, targets, Orthanc config."""

from __future__ import annotations

from pathlib import Path

import anyio
from bench import dicomweb
from bench.measure import latency_stats, percentile
from bench.results import Measurement, Target, combine_runs
from bench.servers import orthanc_config


async def _collect(paths: list[Path]) -> bytes:
    return b"".join([chunk async for chunk in dicomweb.multipart_body(paths)])


def test_multipart_body_frames_each_file_and_matches_declared_length(tmp_path: Path) -> None:
    payloads = [b"\x00DICM" * 300_000, b"second", b""]
    paths = []
    for n, payload in enumerate(payloads):
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(payload)
        paths.append(path)
    body = anyio.run(_collect, paths)
    assert len(body) == dicomweb.multipart_length(paths)
    delimiter = f"--{dicomweb.BOUNDARY}".encode()
    assert body.endswith(delimiter + b"--\r\n")
    parts = body.split(b"\r\n" + delimiter)
    # the first part starts with the delimiter itself (no preamble)
    assert parts[0].startswith(delimiter + b"\r\n")
    bodies = [p.split(b"\r\n\r\n", 1)[1] for p in parts[:-1]]
    assert bodies == payloads
    assert all(b"Content-Type: application/dicom" in p for p in parts[:-1])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    stats = latency_stats([0.001, 0.002, 0.003, 0.004], errors=1)
    assert stats.p50_ms == 2.0 and stats.p95_ms == 4.0 and stats.errors == 1


def test_targets_judge_ratio_direction_and_absolute_limit() -> None:
    assert Target(ratio=1.5).met("higher", 10.0, 1.6) is True
    assert Target(ratio=1.5).met("higher", 10.0, 1.4) is False
    assert Target(ratio=0.5).met("lower", 10.0, 0.4) is True
    assert Target(ratio=0.5).met("lower", 10.0, 0.6) is False
    assert Target(limit=200.0).met("lower", 250.0, None) is False
    assert Target(limit=200.0).met("lower", 150.0, None) is True
    assert Target(ratio=1.0).met("higher", None, None) is None


def test_orthanc_config_isolates_storage_and_enables_dicomweb(tmp_path: Path) -> None:
    config = orthanc_config(tmp_path, 18042, 14242)
    assert config["StorageDirectory"] == str(tmp_path / "storage")
    assert config["HttpPort"] == 18042
    assert config["AuthenticationEnabled"] is False
    assert config["RemoteAccessAllowed"] is False
    assert config["DicomWeb"] == {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}


def _run(value: float | None, errors: int = 0, key: str = "stow.c1.b1.ips") -> list[Measurement]:
    return [Measurement(key, "STOW-RS ingest", "c1", "instances/s", "higher", value, errors)]


def test_combined_runs_report_the_median_and_every_error() -> None:
    runs = [_run(90.0), _run(120.0, errors=1), _run(100.0), _run(float("nan"))]
    (combined,) = combine_runs(runs)
    assert combined.value == 100.0  # median of the three numbers; the missing one is left out
    assert combined.errors == 1
    assert "median of 3 runs (90-120)" in combined.note


def test_one_run_is_reported_as_measured() -> None:
    assert combine_runs([_run(42.0)]) == _run(42.0)


def test_ab_report_gives_medians_and_new_over_old() -> None:
    from bench.ab import WORKLOADS, report

    workload = WORKLOADS["wado1"]
    table = report("abc123", [(workload, [10.0, 30.0, 20.0], [40.0, 44.0, 60.0])], 3)
    row = next(line for line in table.splitlines() if line.startswith(f"| {workload.name}"))
    assert row.split(" | ")[2:5] == ["20", "44", "2.20"]
    assert "old (abc123), median of 3 alternating rounds" in table
