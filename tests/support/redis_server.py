"""A throwaway Redis server from the Debian package, for tests that need the real engine.

Started on a free 127.0.0.1 port in a temporary directory, with persistence off (``--save ""
--appendonly no``): nothing outlives the context. `scripts/install-system.sh` installs
``redis-server``.

Usage, in a suite's ``conftest.py`` or test module::

    @pytest.fixture(scope="session")
    def redis_url() -> Iterator[str]:
        with running_redis() as url:
            yield url
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STARTUP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start(binary: str, root: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(root / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_until_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once the server answers PING; False if it exited (e.g. the port was taken meanwhile)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _answers_ping(port):
            return True
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {STARTUP_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_redis(attempts: int = 3) -> Iterator[str]:
    """Yield the ``redis://`` URL of a fresh, empty server; stop and delete it on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run scripts/install-system.sh")
    root = Path(tempfile.mkdtemp(prefix="dicomvault-redis-"))
    try:
        for _ in range(attempts):  # the free port can be taken between probe and bind
            port = _free_port()
            process = _start(binary, root, port)
            try:
                if _wait_until_ready(process, port):
                    yield f"redis://127.0.0.1:{port}/0"
                    return
            finally:
                _stop(process)
        log = root / "redis.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server failed to start {attempts} times:\n{detail}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
