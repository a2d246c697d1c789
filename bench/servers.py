"""Start and stop the servers under test, each with its own fresh storage in a temp directory.

Orthanc comes from Debian (``scripts/install-orthanc.sh``); dicomvault is this repository's
``dicomvault serve``. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
ORTHANC_PLUGINS = "/usr/share/orthanc/plugins"


class ServerFailed(RuntimeError):
    """A server under test did not start, or died: the bench must say so, not report zeros."""


@dataclass
class RunningServer:
    """A started server: where its DICOMweb root is and which process to sample for RSS."""

    name: str
    dicomweb_root: str
    process: subprocess.Popen[bytes]
    log_path: Path
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    settings_note: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerFailed(
                f"{self.name} exited with {self.process.returncode}:\n{log_tail(self.log_path)}"
            )


def preflight(server: RunningServer) -> None:
    """One QIDO-RS request before measuring: a server that refuses every request (auth not
    configured, route missing) fails here, at once, instead of after minutes of errors."""
    url = f"{server.dicomweb_root}/studies?limit=1"
    headers = {"Accept": "application/dicom+json", **server.headers}
    try:
        response = httpx.get(url, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise ServerFailed(f"{server.name}: preflight GET {url} failed: {exc!r}") from exc
    if response.status_code not in (200, 204):
        raise ServerFailed(
            f"{server.name}: preflight GET {url} answered HTTP {response.status_code}: "
            f"{response.text[:300]}"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(
    process: subprocess.Popen[bytes], url: str, name: str, log_path: Path
) -> httpx.Response:
    """Poll ``url`` until it answers 200; fail fast if the process exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = ""
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerFailed(
                    f"{name} exited with {process.returncode} during start-up:\n"
                    f"{log_tail(log_path)}"
                )
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return response
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(0.2)
    raise ServerFailed(
        f"{name} not ready at {url} after {STARTUP_TIMEOUT_S:.0f}s ({last_error}):\n"
        f"{log_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def _spawn(
    argv: Sequence[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield process
        finally:
            _stop(process)


def orthanc_config(work_dir: Path, http_port: int, dicom_port: int) -> dict[str, object]:
    """An Orthanc configuration equal to the defaults except: private storage, localhost ports,
    no authentication, DICOMweb plugin on ``/dicom-web/``. Storage compression stays off (the
    default), as it is for dicomvault."""
    return {
        "Name": "BENCH",
        "StorageDirectory": str(work_dir / "storage"),
        "IndexDirectory": str(work_dir / "storage"),
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "DicomPort": dicom_port,
        "SaveJobs": False,
        "Plugins": [ORTHANC_PLUGINS],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }


def orthanc_binary() -> str:
    found = shutil.which("Orthanc")
    if found is None:
        raise ServerFailed("Orthanc is not installed: run scripts/install-orthanc.sh")
    return found


@contextlib.contextmanager
def orthanc_server(work_dir: Path) -> Iterator[RunningServer]:
    """Run Debian's Orthanc on a free port with a fresh storage directory."""
    binary = orthanc_binary()
    work_dir.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config_path = work_dir / "orthanc.json"
    config_path.write_text(json.dumps(orthanc_config(work_dir, http_port, dicom_port), indent=2))
    log_path = work_dir / "orthanc.log"
    base = f"http://127.0.0.1:{http_port}"
    with _spawn([binary, str(config_path)], log_path, work_dir) as process:
        system = _wait_ready(process, f"{base}/system", "Orthanc", log_path).json()
        plugin = _orthanc_plugin_version(base)
        if plugin is None:
            raise ServerFailed(f"Orthanc's DICOMweb plugin is not loaded:\n{log_tail(log_path)}")
        version = f"Orthanc {system.get('Version', '?')}, DICOMweb plugin {plugin}"
        yield RunningServer("Orthanc", f"{base}/dicom-web", process, log_path, version)


def _orthanc_plugin_version(base: str) -> str | None:
    response = httpx.get(f"{base}/plugins/dicom-web", timeout=5.0)
    if response.status_code != 200:
        return None
    version = response.json().get("Version")
    return str(version) if version else None


def dicomvault_version() -> str:
    try:
        return f"dicomvault {metadata.version('dicomvault')}"
    except metadata.PackageNotFoundError:
        return "dicomvault (not installed)"


# Settings of the dicomvault under test that differ from its defaults, and why: Orthanc has no
# rate limit, so the per-principal limit (10 requests/s by default) is lifted; the access token
# must outlive a full run.
DICOMVAULT_BENCH_ENV = {
    "DICOMVAULT_RATE_LIMIT_RATE": "1000000",
    "DICOMVAULT_RATE_LIMIT_BURST": "1000000",
    "DICOMVAULT_ACCESS_TOKEN_TTL": "86400",
}
DICOMVAULT_TOKEN_PATH = "/api/v1/auth/token"


def _dicomvault_login(base: str, password: str) -> dict[str, str]:
    """An Authorization header for the first-start ``admin`` user (OAuth2 password grant,
    RFC 6749 4.3). Empty when the server has no such endpoint: the preflight then says why."""
    try:
        response = httpx.post(
            f"{base}{DICOMVAULT_TOKEN_PATH}",
            data={"grant_type": "password", "username": "admin", "password": password},
            timeout=30.0,
        )
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    token = response.json().get("access_token")
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.contextmanager
def dicomvault_server(
    work_dir: Path,
    repo_root: Path,
    extra_args: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    source: Path | None = None,
) -> Iterator[RunningServer]:
    """Run ``dicomvault serve`` (embedded default: SQLite + local disk) with a fresh data dir.

    Unless ``headers`` are given, the bench logs in as the ``admin`` user that the first start
    creates with a password chosen here. ``source`` runs another checkout's ``src/`` (put first
    on ``PYTHONPATH``) with this checkout's environment: how ``bench.ab`` starts the old code.
    """
    binary = repo_root / ".venv" / "bin" / "dicomvault"
    if not os.access(binary, os.X_OK):
        raise ServerFailed(f"{binary} not found: run `uv sync` in {repo_root}")
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(binary),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra_args,
    ]
    password = secrets.token_urlsafe(24)
    env = {**os.environ, **DICOMVAULT_BENCH_ENV, "DICOMVAULT_ADMIN_PASSWORD": password}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    log_path = work_dir / "dicomvault.log"
    base = f"http://127.0.0.1:{port}"
    with _spawn(argv, log_path, repo_root, env) as process:
        _wait_ready(process, f"{base}/healthz", "dicomvault", log_path)
        auth = dict(headers) if headers else _dicomvault_login(base, password)
        note = ", ".join(f"{k}={v}" for k, v in DICOMVAULT_BENCH_ENV.items())
        yield RunningServer(
            "dicomvault",
            f"{base}/dicom-web",
            process,
            log_path,
            dicomvault_version(),
            auth,
            note + ("; logged in as admin" if "Authorization" in auth and not headers else ""),
        )
