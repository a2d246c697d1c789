"""Transfer syntaxes and their DICOMweb media types (PS3.18 Table 8.7.3-5)."""

from __future__ import annotations

from pydicom.uid import DeflatedExplicitVRLittleEndian

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
# PS3.5 A.5: the whole data set after the File Meta Information is deflated (RFC 1951).
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: str = DeflatedExplicitVRLittleEndian
NATIVE_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",
        EXPLICIT_VR_LITTLE_ENDIAN,
        "1.2.840.10008.1.2.2",
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    }
)

_FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg2",
    "1.2.840.10008.1.2.4.101": "video/mpeg2",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}


def frame_media_type(transfer_syntax_uid: str) -> str:
    """The media type a frame is sent as, stored in ``transfer_syntax_uid``."""
    return _FRAME_MEDIA_TYPES.get(transfer_syntax_uid, "application/octet-stream")


def is_native(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in NATIVE_SYNTAXES


# Native syntaxes whose frame bytes are exactly Explicit VR Little Endian's: the pixel data of
# Implicit VR Little Endian is encoded the same way, and frames of a Deflated data set are served
# inflated. Frames are labelled with what their bytes are (PS3.18 8.7.3.5.2), not how the file
# around them was stored.
_FRAMES_AS_EXPLICIT_LITTLE = frozenset({"1.2.840.10008.1.2", DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN})


def frame_transfer_syntax(transfer_syntax_uid: str) -> str:
    """The transfer syntax of the frame bytes served for an instance stored in this one."""
    if transfer_syntax_uid in _FRAMES_AS_EXPLICIT_LITTLE:
        return EXPLICIT_VR_LITTLE_ENDIAN
    return transfer_syntax_uid
