"""Bounded inflation of the Deflated Explicit VR Little Endian transfer syntax (PS3.5 A.5).

pydicom inflates the whole data set into memory with no limit, so a 1 MB body that inflates to
gigabytes (a "deflate bomb") would exhaust memory. Here the raw deflate stream (RFC 1951, no zlib
header) is inflated in bounded chunks into a spooled temporary file, and refused as soon as the
output passes the size cap, or, past a floor, an implausible compression ratio.
"""

from __future__ import annotations

import tempfile
import zlib
from typing import IO, BinaryIO

from dicomvault.dicom.problems import InvalidDicom, TooLarge

__all__ = ["INFLATE_CHUNK", "RATIO_FLOOR", "inflate_data_set", "inflate_stream"]

INFLATE_CHUNK = 1024 * 1024
_INPUT_CHUNK = 64 * 1024
#: Output below this size is never refused for its compression ratio.
RATIO_FLOOR = 32 * 1024 * 1024
_IN_MEMORY_LIMIT = 8 * 1024 * 1024


def inflate_stream(
    source: BinaryIO,
    target: IO[bytes],
    max_inflated_bytes: int,
    max_ratio: int | None = None,
) -> int:
    """Inflate the raw deflate stream at the current position of ``source`` into ``target``.

    Returns the number of inflated bytes. Raises :class:`TooLarge` as soon as the output would
    exceed ``max_inflated_bytes``, or, once past :data:`RATIO_FLOOR` bytes of output, as soon as
    output / input exceeds ``max_ratio``: a bomb is refused after a few megabytes instead of
    after inflating up to the cap. Raises :class:`InvalidDicom` for a corrupt or truncated
    stream. Memory use is bounded by :data:`INFLATE_CHUNK`, whatever the compression ratio.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    consumed = 0
    total = 0

    def emit(out: bytes) -> None:
        nonlocal total
        total += len(out)
        if total > max_inflated_bytes:
            raise TooLarge(f"deflated data set inflates to more than {max_inflated_bytes} bytes")
        if max_ratio is not None and total > RATIO_FLOOR and total > max_ratio * consumed:
            raise TooLarge(f"deflated data set inflates more than {max_ratio} times its size")
        target.write(out)

    try:
        while not inflater.eof:
            data = source.read(_INPUT_CHUNK)
            if not data:
                break
            while data and not inflater.eof:
                out = inflater.decompress(data, INFLATE_CHUNK)
                consumed += len(data) - len(inflater.unconsumed_tail)
                emit(out)
                data = inflater.unconsumed_tail
        if not inflater.eof:
            emit(inflater.flush())
            if not inflater.eof:
                raise InvalidDicom("deflated data set is truncated (PS3.5 A.5)")
    except zlib.error as exc:
        raise InvalidDicom(f"deflated data set is corrupt (PS3.5 A.5): {exc}") from None
    return total


def inflate_data_set(
    source: BinaryIO, max_inflated_bytes: int, max_ratio: int | None = None
) -> tuple[IO[bytes], int]:
    """Inflate the rest of ``source`` into a spooled temporary file, positioned at 0.

    Small data sets stay in memory; larger ones spill to a temporary file that is deleted when
    the returned object is closed. The caller owns (and must close) the returned file.
    """
    target: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_LIMIT)  # noqa: SIM115
    try:
        size = inflate_stream(source, target, max_inflated_bytes, max_ratio)
        target.seek(0)
    except BaseException:
        target.close()
        raise
    return target, size
