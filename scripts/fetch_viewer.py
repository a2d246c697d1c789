"""Install the prebuilt OHIF Viewer (npm ``@ohif/app``, its ``dist/``) for ``/viewer``.

The version and the tarball's sha512 integrity are pinned in ``scripts/ohif-viewer.json``. The
tarball comes from ``npm pack`` when npm is on the PATH (it honours the npm registry and cache
configuration), else straight from the registry with urllib, or from ``--tarball FILE`` for an
offline machine. Nothing is unpacked unless the integrity matches. The app lands in
``<prefix>/share/ohif/<version>/`` (``<prefix>`` is the Python environment running this script,
normally ``.venv``), the default ``viewer_dir`` of ``src/dicomvault/config.py``. Re-running is a
no-op once that version is in place. Standard library only: it runs before anything else exists.

    .venv/bin/python scripts/fetch_viewer.py [--dest DIR] [--tarball FILE] [--force]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

PIN_FILE = Path(__file__).resolve().with_name("ohif-viewer.json")
DIST_PREFIX = PurePosixPath("package/dist")
LICENSE_MEMBER = PurePosixPath("package/LICENSE")
MARKER = ".integrity"
DOWNLOAD_TIMEOUT_S = 120


class FetchError(RuntimeError):
    """The viewer could not be fetched, verified or unpacked; the message says why."""


def load_pin(path: Path = PIN_FILE) -> dict[str, str]:
    pin: dict[str, str] = json.loads(path.read_text())
    for key in ("package", "version", "tarball", "integrity"):
        if not pin.get(key):
            raise FetchError(f"{path}: '{key}' is missing")
    if not pin["integrity"].startswith("sha512-"):
        raise FetchError(f"{path}: integrity must be an sha512 SRI string")
    return pin


def default_dest(version: str) -> Path:
    return Path(sys.prefix) / "share" / "ohif" / version


def is_installed(dest: Path, integrity: str) -> bool:
    marker = dest / MARKER
    return (
        (dest / "index.html").is_file()
        and marker.is_file()
        and marker.read_text().strip() == integrity
    )


def sri_sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def verify(path: Path, integrity: str) -> None:
    actual = sri_sha512(path)
    if not hmac.compare_digest(actual, integrity):
        raise FetchError(f"integrity mismatch for {path.name}: got {actual}, pinned {integrity}")


def npm_pack(pin: dict[str, str], workdir: Path) -> Path:
    """``npm pack`` downloads (or takes from npm's cache) the exact tarball the registry holds."""
    spec = f"{pin['package']}@{pin['version']}"
    done = subprocess.run(
        ["npm", "pack", spec, "--json", "--silent", "--pack-destination", str(workdir)],
        capture_output=True,
        text=True,
        timeout=DOWNLOAD_TIMEOUT_S * 5,
        check=False,
    )
    if done.returncode != 0:
        raise FetchError(f"npm pack {spec} failed: {done.stderr.strip()[-500:]}")
    try:
        filename = json.loads(done.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError) as exc:
        raise FetchError(f"npm pack {spec}: unexpected output {done.stdout[:200]!r}") from exc
    # npm names scoped packages "ohif-app-3.13.2.tgz"; take the file it reports.
    tarball = workdir / Path(filename).name
    if not tarball.is_file():
        raise FetchError(f"npm pack {spec}: {tarball} was not written")
    return tarball


def download(pin: dict[str, str], workdir: Path) -> Path:
    url = pin["tarball"]
    if not url.startswith("https://"):
        raise FetchError(f"refusing a non-HTTPS tarball URL: {url}")
    target = workdir / PurePosixPath(url).name
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,  # noqa: S310
        target.open("wb") as out,
    ):
        shutil.copyfileobj(response, out, 1 << 20)
    return target


def obtain(pin: dict[str, str], workdir: Path) -> Path:
    if shutil.which("npm"):
        try:
            return npm_pack(pin, workdir)
        except (FetchError, subprocess.TimeoutExpired) as exc:
            print(f"  {exc}; downloading with urllib instead", file=sys.stderr)
    try:
        return download(pin, workdir)
    except OSError as exc:
        raise FetchError(f"download of {pin['tarball']} failed: {exc}") from exc


def _target_of(member: tarfile.TarInfo) -> PurePosixPath | None:
    """Where a member goes inside the install folder, or None to skip it.

    Only regular files and folders under ``package/dist/`` (plus the licence) are taken; links,
    devices, absolute names and ``..`` are refused outright (a tarball is untrusted input even
    after its hash matched a pin someone could have edited)."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise FetchError(f"unsafe path in tarball: {member.name}")
    if name == LICENSE_MEMBER and member.isfile():
        return PurePosixPath("LICENSE")
    if not name.is_relative_to(DIST_PREFIX) or name == DIST_PREFIX:
        return None
    if not (member.isfile() or member.isdir()):
        raise FetchError(f"unexpected member type in tarball: {member.name}")
    return name.relative_to(DIST_PREFIX)


def unpack(tarball: Path, into: Path) -> int:
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            relative = _target_of(member)
            if relative is None:
                continue
            target = into.joinpath(*relative.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            if source is None:
                raise FetchError(f"cannot read {member.name}")
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            count += 1
    if not (into / "index.html").is_file():
        raise FetchError("the tarball has no package/dist/index.html")
    return count


def install(pin: dict[str, str], dest: Path, tarball: Path | None, force: bool) -> str:
    if not force and is_installed(dest, pin["integrity"]):
        return f"OHIF Viewer {pin['version']} already in {dest}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ohif-", dir=dest.parent) as tmp:
        work = Path(tmp)
        source = tarball or obtain(pin, work)
        verify(source, pin["integrity"])
        staged = work / "dist"
        staged.mkdir()
        count = unpack(source, staged)
        (staged / MARKER).write_text(pin["integrity"] + "\n")
        # Swap in whole: a half-unpacked folder is never what the server sees.
        if dest.exists():
            old = work / "old"
            os.replace(dest, old)
        os.replace(staged, dest)
    return f"OHIF Viewer {pin['version']}: {count} files in {dest}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, help="install folder [<prefix>/share/ohif/<version>]")
    parser.add_argument("--tarball", type=Path, help="use this local @ohif/app tarball")
    parser.add_argument("--pin", type=Path, default=PIN_FILE, help="pin file with the integrity")
    parser.add_argument("--force", action="store_true", help="reinstall even when present")
    args = parser.parse_args(argv)
    try:
        pin = load_pin(args.pin)
        dest = args.dest or default_dest(pin["version"])
        print(install(pin, dest, args.tarball, args.force))
    except (FetchError, OSError, tarfile.TarError) as exc:
        print(f"fetch_viewer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
