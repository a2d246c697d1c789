"""Accept negotiation for WADO-RS (PS3.18 8.7): what the client takes, or 406."""

from __future__ import annotations

from dataclasses import dataclass

from dicomvault.api.media import MediaRange, parse_accept
from dicomvault.errors import NotAcceptable
from dicomvault.retrieve.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN

AS_STORED = "*"


@dataclass(frozen=True)
class InstanceChoice:
    multipart: bool
    transfer_syntax: str  # AS_STORED or a UID


def choose_instance_format(accept_header: str | None, *, single_allowed: bool) -> InstanceChoice:
    """PS3.18 8.7.3.5.2. A missing transfer-syntax parameter is served as stored — the tolerant
    choice real archives make — rather than transcoded to Explicit VR Little Endian."""
    for r in parse_accept(accept_header):
        if r.type in ("*/*", "multipart/*"):
            return InstanceChoice(True, AS_STORED)
        if r.type == "multipart/related":
            part = r.params.get("type", "application/dicom").lower()
            if part in ("application/dicom", "*/*", "application/*"):
                return InstanceChoice(True, _syntax(r))
        if r.type == "application/dicom" and single_allowed:
            return InstanceChoice(False, _syntax(r))
    raise NotAcceptable('instances are served as multipart/related; type="application/dicom"')


def _syntax(r: MediaRange) -> str:
    ts = r.params.get("transfer-syntax", AS_STORED).strip()
    return ts or AS_STORED


@dataclass(frozen=True)
class FrameChoice:
    # "as-stored" media type family requested: application/octet-stream or an image/video type
    part_type: str
    transfer_syntax: str  # AS_STORED or a UID


def choose_frame_format(accept_header: str | None) -> FrameChoice:
    """PS3.18 8.7.3.5.3: frames as multipart/related of octet-stream (native) or image types."""
    for r in parse_accept(accept_header):
        if r.type in ("*/*", "multipart/*"):
            return FrameChoice("*/*", AS_STORED)
        if r.type == "multipart/related":
            part = r.params.get("type", "application/octet-stream").lower()
            ts = r.params.get("transfer-syntax")
            if part == "application/octet-stream":
                return FrameChoice(part, ts or EXPLICIT_VR_LITTLE_ENDIAN)
            return FrameChoice(part, ts or AS_STORED)
        if r.type in ("application/octet-stream",):
            return FrameChoice(r.type, r.params.get("transfer-syntax") or EXPLICIT_VR_LITTLE_ENDIAN)
    raise NotAcceptable("frames are served as multipart/related")


def accepts_json(accept_header: str | None) -> bool:
    for r in parse_accept(accept_header):
        if r.type in ("*/*", "application/*", "application/dicom+json", "application/json"):
            return True
    return False
