"""Step 1 of ingest: stream bytes to a spool file, hashing as they pass, under a size cap.

Never holds a whole instance in memory; a body past the cap is refused while streaming and its
spool file removed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType

from dicomvault.errors import PayloadTooLarge


class SpoolFile:
    """A temporary file that receives one instance's bytes.

    Use as a context manager: the file is deleted on exit unless ``detach()`` was called.
    """

    def __init__(self, spool_dir: Path, max_bytes: int) -> None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="in-", suffix=".dcm", dir=spool_dir)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=1024 * 1024)
        self._hash = hashlib.sha256()
        self._max = max_bytes
        self.size = 0
        self._closed = False

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self.size > self._max:
            raise PayloadTooLarge(f"instance larger than {self._max} bytes")
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> str:
        """Close the file and return the SHA-256 (hex) of what was written."""
        if not self._closed:
            self._file.close()
            self._closed = True
        return self._hash.hexdigest()

    def discard(self) -> None:
        if not self._closed:
            self._file.close()
            self._closed = True
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SpoolFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


def spool_path(spool_dir: Path, source: Path, max_bytes: int) -> tuple[SpoolFile, str]:
    """Copy an existing file (folder import) into a spool file; the original is never touched."""
    spool = SpoolFile(spool_dir, max_bytes)
    try:
        with source.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                spool.write(chunk)
        return spool, spool.finish()
    except BaseException:
        spool.discard()
        raise


def zero_preamble(path: Path) -> str:
    """Zero the 128-byte preamble in place (CVE-2019-11687) and return the new SHA-256."""
    with path.open("r+b") as f:
        f.write(b"\x00" * 128)
        f.flush()
        f.seek(0)
        digest = hashlib.file_digest(f, "sha256")
    return digest.hexdigest()
