"""First start and unsafe configuration: the real ``dicomvault serve`` process.

Without ``DICOMVAULT_ADMIN_PASSWORD`` the first start creates ``admin`` with a random password
printed once on the console; a second start prints nothing and the password still works. Outside
development mode a placeholder or short ``DICOMVAULT_JWT_SECRET`` stops the server before it
listens; in development mode it is tolerated.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import TEST_ENV, free_port, running_server

FIRST_START = re.compile(r"First start: user 'admin' created with password: (\S+)")


def _login(base_url: str, password: str) -> int:
    response = httpx.post(
        f"{base_url}/api/v1/auth/token",
        data={"grant_type": "password", "username": "admin", "password": password},
        timeout=30,
    )
    return response.status_code


def test_the_first_admin_gets_a_random_password_shown_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data, env={"DICOMVAULT_ADMIN_PASSWORD": ""}) as first:
        printed = FIRST_START.findall(first.log())
        assert len(printed) == 1, first.log()
        password = printed[0]
        assert len(password) >= 20
        assert _login(first.base_url, password) == 200
        assert _login(first.base_url, TEST_ENV["DICOMVAULT_ADMIN_PASSWORD"]) == 400
        # Shown on the console only: not in any log record, not in the audit trail.
        assert sum(line.count(password) for line in first.log().splitlines()) == 1
    with running_server(data, env={"DICOMVAULT_ADMIN_PASSWORD": ""}) as second:
        assert "First start" not in second.log()
        assert _login(second.base_url, password) == 200
    # No secret configured: one was made on the first start and kept, readable by us alone.
    secret = data / "jwt-secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_text().strip()) >= 32


def _serve(data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "dicomvault"
    return subprocess.run(
        [str(exe), "serve", "--port", str(free_port()), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **TEST_ENV, **env},
    )


@pytest.mark.parametrize("secret", ["changeme", "short-but-not-a-placeholder"])
def test_a_placeholder_secret_stops_the_server_outside_development(
    tmp_path: Path, secret: str
) -> None:
    done = _serve(tmp_path / "data", {"DICOMVAULT_JWT_SECRET": secret})
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "DICOMVAULT_JWT_SECRET" in output
    assert "refusing to start" in output
    assert "Uvicorn running" not in output


def test_development_mode_tolerates_a_placeholder_secret(tmp_path: Path) -> None:
    """... and a configured admin password is used as it is, never printed."""
    password = "configured-admin-password-42"
    env = {
        "DICOMVAULT_JWT_SECRET": "changeme",
        "DICOMVAULT_MODE": "development",
        "DICOMVAULT_ADMIN_PASSWORD": password,
    }
    with running_server(tmp_path / "data", env=env) as live:
        assert _login(live.base_url, password) == 200
        assert "First start" not in live.log()
        assert password not in live.log()
