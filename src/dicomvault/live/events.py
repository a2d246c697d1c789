"""The one kind of live event: an instance became visible in a tenant.

It is published after the index transaction committed (DESIGN.md data flow, step 5), so a
subscriber that re-queries on receipt finds the instance. Only the tenant and the instance's UIDs
travel: UIDs may appear in logs and streams, patient data may not (DESIGN.md, security model).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from dicomvault.config import is_valid_tenant_name
from dicomvault.dicom.uids import is_valid_uid


class InvalidEvent(ValueError):
    """A payload (from Redis, say) that is not a well-formed event; it is ignored."""


class EventKind(StrEnum):
    STORED = "stored"  # a new instance
    REPLACED = "replaced"  # different bytes under a stored SOP Instance UID (replace policy)


@dataclass(frozen=True)
class InstanceEvent:
    kind: EventKind
    tenant: str
    study_uid: str
    series_uid: str
    sop_uid: str

    def to_dict(self) -> dict[str, str]:
        """The wire form: DICOM keywords for the UIDs, as in the rest of the API."""
        return {
            "kind": self.kind.value,
            "tenant": self.tenant,
            "StudyInstanceUID": self.study_uid,
            "SeriesInstanceUID": self.series_uid,
            "SOPInstanceUID": self.sop_uid,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, payload: bytes | str) -> InstanceEvent:
        """Strict reading: anything but the exact wire form raises :class:`InvalidEvent`."""
        try:
            data: Any = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("not JSON") from exc
        if not isinstance(data, dict):
            raise InvalidEvent("not an object")
        try:
            kind = EventKind(data["kind"])
            tenant = data["tenant"]
            uids = (data["StudyInstanceUID"], data["SeriesInstanceUID"], data["SOPInstanceUID"])
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidEvent("missing or unknown member") from exc
        if not is_valid_tenant_name(tenant):
            raise InvalidEvent("tenant")
        if not all(isinstance(uid, str) and is_valid_uid(uid) for uid in uids):
            raise InvalidEvent("uid")
        return cls(kind, tenant, *uids)
