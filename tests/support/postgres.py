"""A throwaway PostgreSQL server from the Debian package, for tests that need the real engine.

Started once per test session in a temporary directory on a free port; `scripts/install-system.sh`
installs the package. Runs as the ``postgres`` system user because initdb refuses root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@contextmanager
def running_postgres() -> Iterator[str]:
    """Yield an asyncpg SQLAlchemy URL of a fresh, empty database; stop and delete on exit."""
    bindir = find_pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: run scripts/install-system.sh")
    root = Path(tempfile.mkdtemp(prefix="dicomvault-pg-"))
    data = root / "data"
    port = _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        capture_output=True,
    )
    log = root / "server.log"
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "start",
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = subprocess.run(
                _as_postgres([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]),
                capture_output=True,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "dicomvault",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/dicomvault"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server behind ``server_url`` and return its URL."""
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    bindir = find_pg_bin()
    assert bindir is not None
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "createdb"),
                "-h",
                str(url.host),
                "-p",
                str(url.port),
                "-U",
                str(url.username),
                name,
            ]
        ),
        check=True,
        capture_output=True,
    )
    return url.set(database=name).render_as_string(hide_password=False)
