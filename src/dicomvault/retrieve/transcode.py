"""Transcoding for clients that ask for a transfer syntax other than the stored one."""

from __future__ import annotations

import io
from pathlib import Path

from dicomvault.retrieve.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN


def to_explicit_little_endian(path: Path) -> bytes:
    """Decode (if compressed) and re-encode as Explicit VR Little Endian (PS3.5 A.2)."""
    from pydicom import dcmread
    from pydicom.uid import UID

    ds = dcmread(str(path))
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return out.getvalue()
