"""A killed process's spool files are removed at the next start; a live request's are not."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dicomvault.bootstrap import prepare, remove_spool_leftovers
from dicomvault.config import Settings


def _file(directory: Path, name: str, age_seconds: float) -> Path:
    path = directory / name
    path.write_bytes(b"partial body")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


def test_old_spool_files_go_and_fresh_ones_stay(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    old_in = _file(spool, "in-killed.dcm", 2 * 3600)
    old_out = _file(spool, "out-killed.dcm", 2 * 3600)
    fresh = _file(spool, "in-live.dcm", 5)
    assert remove_spool_leftovers(spool) == 2
    assert not old_in.exists() and not old_out.exists()
    assert fresh.exists()


def test_the_server_start_removes_them(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.spool_dir.mkdir(parents=True)
    leftover = _file(settings.spool_dir, "in-killed.dcm", 2 * 3600)
    prepare(settings)
    assert not leftover.exists()
