"""Two servers sharing one Redis: a browser connected to one sees what is stored through the other.

The real path end to end: STOW-RS on replica A → ingest commits → Redis PUBLISH → replica B's
pattern subscription → B's SSE stream (``GET /api/v1/events``) to a client of the same tenant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from dicomvault.testing.synthetic import make_instance
from tests.support.server import running_server


def _events(lines: object, deadline: float) -> list[tuple[str, dict[str, object]]]:
    """Read SSE events until the first ``instance`` one (or the deadline)."""
    seen: list[tuple[str, dict[str, object]]] = []
    name = "message"
    for line in lines:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            break
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            seen.append((name, json.loads(line[5:])))
            if name == "instance":
                break
    return seen


def test_an_instance_stored_on_one_replica_reaches_the_other(
    redis_url: str, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    env = {"DICOMVAULT_REDIS_URL": redis_url, "DICOMVAULT_LIVE_HEARTBEAT_SECONDS": "0.5"}
    with (
        running_server(tmp_path / "a" / "data", env=env) as a,
        running_server(tmp_path / "b" / "data", env=env) as b,
    ):
        data = make_instance(patient_id="REPL0001")
        client = httpx.Client(base_url=b.base_url, headers=b.auth_headers, timeout=30)
        with client, client.stream("GET", "/api/v1/events") as stream:
            lines = stream.iter_lines()
            assert _events_until_ready(lines)
            stored = httpx.post(
                f"{a.dicomweb}/studies",
                content=data,
                headers={**a.auth_headers, "Content-Type": "application/dicom"},
                timeout=30,
            )
            assert stored.status_code == 200
            events = _events(lines, time.monotonic() + 15)
        assert events and events[-1][0] == "instance"
        payload = events[-1][1]
        assert payload["tenant"] == "default"
        sop = stored.json()["00081199"]["Value"][0]["00081155"]["Value"][0]
        assert payload["SOPInstanceUID"] == sop
        assert "REPL0001" not in json.dumps(payload)


def _events_until_ready(lines: object) -> bool:
    for line in lines:  # type: ignore[attr-defined]
        if line.startswith("event: ready"):
            return True
    pytest.fail("the stream ended before its ready event")
