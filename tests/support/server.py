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


@dataclass
class LiveServer:
    base_url: str  # http://127.0.0.1:PORT
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

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
    full_env = {**os.environ, "DICOMVAULT_LOG_LEVEL": "info", **(env or {})}
    exe = Path(sys.executable).parent / "dicomvault"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
             str(data_dir), *(args or [])],
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
