"""The probes (/healthz, /readyz) and CORS, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import LiveServer, free_port, running_server

VIEWER_ORIGIN = "https://viewer.example.org"


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("cors") / "data"
    env = {"DICOMVAULT_CORS_ORIGINS": json.dumps([VIEWER_ORIGIN])}
    with running_server(data, env=env) as live:
        yield live


def test_ready_when_index_and_storage_answer(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"index": "ok", "storage": "ok"}}


def test_not_ready_while_the_blob_store_is_unreachable(tmp_path: Path) -> None:
    """An S3 endpoint nobody listens on: alive (healthz) but not ready (readyz 503)."""
    dead = f"s3://probe-bucket/x?endpoint=http://127.0.0.1:{free_port()}&region=us-east-1"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    with running_server(tmp_path / "data", env=env, args=["--storage-url", dead]) as live:
        assert httpx.get(f"{live.base_url}/healthz").status_code == 200
        response = httpx.get(f"{live.base_url}/readyz", timeout=60)
    assert response.status_code == 503
    assert response.json()["checks"] == {"index": "ok", "storage": "unavailable"}


def test_no_cors_headers_unless_configured(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/healthz", headers={"Origin": VIEWER_ORIGIN})
    assert "access-control-allow-origin" not in response.headers


def test_preflight_from_a_configured_origin(cors_server: LiveServer) -> None:
    response = httpx.options(
        f"{cors_server.dicomweb}/studies",
        headers={
            "Origin": VIEWER_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == VIEWER_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "GET" in response.headers["access-control-allow-methods"]


def test_a_request_from_a_configured_origin_may_read_the_answer(cors_server: LiveServer) -> None:
    response = httpx.get(
        f"{cors_server.dicomweb}/studies",
        headers={**cors_server.auth_headers, "Origin": VIEWER_ORIGIN},
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == VIEWER_ORIGIN


def test_other_origins_get_no_cors_grant(cors_server: LiveServer) -> None:
    preflight = httpx.options(
        f"{cors_server.dicomweb}/studies",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = httpx.get(
        f"{cors_server.dicomweb}/studies",
        headers={**cors_server.auth_headers, "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in response.headers
