"""The one error hierarchy; translated to HTTP / DIMSE status only at the edges.

Each error carries the HTTP status the API answers with and, where the Standard has one, the DICOM
failure reason (PS3.18 Table 10.5.3-1 / PS3.4 Annex GG) the STOW response reports for an instance.
"""

from __future__ import annotations


class DicomVaultError(Exception):
    http_status = 500
    # DICOM failure reason (US) for FailedSOPSequence; 0x0110 "Processing failure" by default.
    failure_reason = 0x0110

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Set by ingest once the instance's identity is known, for FailedSOPSequence items.
        self.sop_class_uid: str | None = None
        self.sop_uid: str | None = None


class NotFound(DicomVaultError):
    """Unknown, or outside the caller's scope: the two look the same (DESIGN.md, security model)."""

    http_status = 404


class BadRequest(DicomVaultError):
    http_status = 400


class Unauthenticated(DicomVaultError):
    """No credentials, or credentials that do not verify (RFC 6750 3.1: 401 + WWW-Authenticate)."""

    http_status = 401


class Forbidden(DicomVaultError):
    """Authenticated, but the principal's roles or scopes do not grant the action."""

    http_status = 403


class TooManyRequests(DicomVaultError):
    http_status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers: dict[str, str] = {}


class NotAcceptable(DicomVaultError):
    http_status = 406


class UnsupportedMediaType(DicomVaultError):
    http_status = 415


class PayloadTooLarge(DicomVaultError):
    http_status = 413
    failure_reason = 0xA700  # Out of resources


class Conflict(DicomVaultError):
    http_status = 409


class InvalidInstance(DicomVaultError):
    """The bytes are not an acceptable DICOM instance (PS3.18 10.5.3: 0xC000 cannot understand)."""

    http_status = 400
    failure_reason = 0xC000


class DataSetMismatch(InvalidInstance):
    """Data set does not match SOP class / required attributes are missing (0xA900)."""

    failure_reason = 0xA900


class StudyMismatch(InvalidInstance):
    """Instance's StudyInstanceUID differs from the one in the URL (PS3.18 10.5.3, 0xC409)."""

    http_status = 409
    failure_reason = 0xC409


class DuplicateInstance(DicomVaultError):
    """Different bytes under a stored SOP Instance UID while the policy is to reject (0x0111)."""

    http_status = 409
    failure_reason = 0x0111


class StorageError(DicomVaultError):
    failure_reason = 0xA700
