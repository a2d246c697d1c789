"""Why an incoming file was refused, in DICOM's own failure vocabulary.

``dicom/`` must not import :mod:`dicomvault.errors` (see DESIGN.md, import direction), so it
raises these; the edges translate them using :attr:`DicomProblem.failure_reason`, the Failure
Reason of PS3.4 Table GG.4-1 / the C-STORE status of PS3.4 Annex B.2.3.

Messages never contain patient data: they name the attribute, not its value (UIDs excepted).
"""

from __future__ import annotations

__all__ = [
    "BulkDataNotFound",
    "DicomProblem",
    "InvalidDicom",
    "MissingAttributes",
    "TooDeep",
    "TooLarge",
]


class DicomProblem(ValueError):
    """A DICOM file or request that cannot be accepted.

    ``failure_reason`` is the DICOM status code to report (PS3.4 Annex B.2.3, PS3.18 Table
    GG.4-1); ``kind`` is a short machine-readable category for logs and metrics.
    """

    def __init__(self, message: str, failure_reason: int = 0xC000, kind: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.failure_reason = failure_reason
        self.kind = kind


class InvalidDicom(DicomProblem):
    """Not DICOM, truncated, bad lengths, bad UIDs, unsupported transfer syntax (0xC000)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xC000, kind="invalid")


class MissingAttributes(DicomProblem):
    """A Type 1 attribute the archive needs is absent or empty (0xA900, PS3.4 B.2.3)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xA900, kind="missing_attributes")


class TooLarge(DicomProblem):
    """Out of resources: the file, or its inflated data set, is over the cap (0xA700)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xA700, kind="too_large")


class TooDeep(DicomProblem):
    """Sequences nested deeper than the configured cap (0xC000)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xC000, kind="too_deep")


class BulkDataNotFound(DicomProblem):
    """A bulk data path that names no binary element in the instance (0xC000, kind not_found)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xC000, kind="not_found")
