"""Two servers sharing one Redis: a browser connected to one sees what is stored through the other.

The real path end to end: STOW-RS on replica A → ingest commits → Redis PUBLISH → replica B's
pattern subscription → B's SSE stream (``GET /api/v1/events``) to a client of the same tenant.
Positions (SSE event IDs) are numbered per tenant in Redis: the same on both replicas, and
unmoved by another tenant's ingests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dicomvault.testing.synthetic import make_instance
from tests.support.server import LiveServer, password_token, running_server

PASSWORD = "replica-tests-password-1"  # noqa: S105 - throwaway test servers


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


# -- two tenants -----------------------------------------------------------------------------------
def _add_tenants_and_users(server: LiveServer) -> None:
    """Tenants north and south, alice in north and bob in south (each replica has its own DB)."""
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as admin:
        for tenant in ("north", "south"):
            admin.post("/api/v1/tenants", json={"name": tenant}).raise_for_status()
        for name, tenant in (("alice", "north"), ("bob", "south")):
            user = {
                "username": name,
                "password": PASSWORD,
                "roles": ["technician"],
                "tenants": [tenant],
                "default_tenant": tenant,
            }
            admin.post("/api/v1/users", json=user).raise_for_status()


def _client(server: LiveServer, username: str) -> httpx.Client:
    token = password_token(server.base_url, username, PASSWORD)
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _store(client: httpx.Client, patient_id: str) -> None:
    response = client.post(
        "/dicom-web/studies",
        content=make_instance(patient_id=patient_id),
        headers={"Content-Type": "application/dicom"},
    )
    assert response.status_code == 200, response.text


SseEvent = tuple[str, str | None, dict[str, object]]


def _sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """(name, id, data) of each event of a text/event-stream, until the stream ends."""
    name, event_id, data = "message", None, ""
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            yield name, event_id, json.loads(data)
            name, event_id, data = "message", None, ""


def _ready(client: httpx.Client, position: str) -> tuple[str | None, dict[str, object]]:
    """The ``ready`` event of a stream resumed at ``position``: its id and data."""
    headers = {"Last-Event-ID": position}
    with client.stream("GET", "/api/v1/events", headers=headers) as stream:
        for name, event_id, data in _sse(stream.iter_lines()):
            if name == "ready":
                return event_id, data
    pytest.fail("the stream ended before its ready event")


def test_positions_are_per_tenant_and_the_same_on_every_replica(
    redis_url: str, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    env = {
        "DICOMVAULT_REDIS_URL": redis_url,
        "DICOMVAULT_LIVE_HEARTBEAT_SECONDS": "0.5",
        "DICOMVAULT_LIVE_STREAM_SECONDS": "4",
    }
    with (
        running_server(tmp_path / "a" / "data", env=env) as a,
        running_server(tmp_path / "b" / "data", env=env) as b,
    ):
        _add_tenants_and_users(a)
        _add_tenants_and_users(b)
        alice_a, alice_b, bob_a = _client(a, "alice"), _client(b, "alice"), _client(a, "bob")
        with alice_a, alice_b, bob_a:
            # Alice watches north on replica B while Bob stores in south on replica A.
            with alice_b.stream("GET", "/api/v1/events") as stream:
                events = _sse(stream.iter_lines())
                name, position, _ = next(events)
                assert name == "ready" and position
                _store(bob_a, "REPL0002")
                rest = list(events)
            assert all(name != "instance" for name, _, _ in rest)
            # Back on the other replica: Bob's ingest moved nothing of Alice's.
            assert _ready(alice_a, position) == (position, {"missed": False})
            # Her own tenant's ingest does move it, on either replica.
            with alice_b.stream("GET", "/api/v1/events") as stream:
                events = _sse(stream.iter_lines())
                assert next(events)[0] == "ready"
                _store(alice_a, "REPL0003")
                name, moved, _ = next(e for e in events if e[0] == "instance")
            assert moved and moved != position
            assert _ready(alice_a, moved) == (moved, {"missed": False})
            assert _ready(alice_b, position) == (moved, {"missed": True})
