"""The real server over real HTTP: ``dicomvault serve`` started as a subprocess on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ADMIN_PASSWORD = "test-admin-password-0123"
# Generous limits so that functional tests never meet a 429; rate-limit tests set their own.
TEST_ENV = {
    "DICOMVAULT_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "DICOMVAULT_COOKIE_SECURE": "false",
    "DICOMVAULT_RATE_LIMIT_RATE": "100000",
    "DICOMVAULT_RATE_LIMIT_BURST": "100000",
    "DICOMVAULT_LOGIN_RATE": "1000",
    "DICOMVAULT_LOGIN_BURST": "1000",
}


def password_token(base_url: str, username: str, password: str) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/token",
        data={"grant_type": "password", "username": username, "password": password},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


@dataclass
class LiveServer:
    base_url: str  # http://127.0.0.1:PORT
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _admin_token: str | None = None

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = password_token(self.base_url, "admin", ADMIN_PASSWORD)
        return self._admin_token

    @property
    def auth_headers(self) -> dict[str, str]:
        """Bearer credentials of the first admin (every role's rights, the default tenant)."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client on the DICOMweb root, authenticated as the admin."""
        headers = {**self.auth_headers, **dict(kwargs.pop("headers", {}) or {})}  # type: ignore[call-overload]
        return httpx.Client(base_url=self.dicomweb, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    @property
    def dicomweb(self) -> str:
        return f"{self.base_url}/dicom-web"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def files_under(self, *parts: str) -> list[Path]:
        root = self.data_dir.joinpath(*parts)
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def blob_files(self) -> list[Path]:
        return self.files_under("blobs")

    def spool_files(self) -> list[Path]:
        return self.files_under("spool")


@contextmanager
def running_server(
    data_dir: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Iterator[LiveServer]:
    """Start ``dicomvault serve`` and wait for /healthz; stop it (and fail loudly) on exit."""
    port = free_port()
    log_path = data_dir.parent / f"server-{port}.log"
    full_env = {**os.environ, "DICOMVAULT_LOG_LEVEL": "info", **TEST_ENV, **(env or {})}
    exe = Path(sys.executable).parent / "dicomvault"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(exe),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *(args or []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, log_path, process)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: LiveServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not become ready:\n{server.log()}")
