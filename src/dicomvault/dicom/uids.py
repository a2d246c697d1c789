"""UID syntax, PS3.5 9.1.

A UID is one or more numeric components separated by ".", each component either "0" or a
number without a leading zero, at most 64 characters in all, only digits and dots.
"""

from __future__ import annotations

import re

from dicomvault.dicom.problems import InvalidDicom, MissingAttributes

__all__ = ["UID_MAX_LENGTH", "UID_PATTERN", "is_valid_uid", "require_uid"]

UID_MAX_LENGTH = 64
UID_PATTERN: re.Pattern[str] = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    """Return whether ``value`` is a syntactically valid UID (PS3.5 9.1)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= UID_MAX_LENGTH
        and value.isascii()
        and UID_PATTERN.fullmatch(value) is not None
    )


def require_uid(value: object, keyword: str) -> str:
    """Return ``value`` as a valid UID string, or raise naming ``keyword``.

    Absent or empty (``None``, ``""``) raises :class:`MissingAttributes` (a Type 1 attribute
    with no value is as good as missing, PS3.5 7.4); anything else that is not a single valid
    UID raises :class:`InvalidDicom`. The UID itself may appear in the message: UIDs are not
    patient data.
    """
    if value is None or (isinstance(value, str) and value == ""):
        raise MissingAttributes(f"{keyword} is missing or empty")
    if not isinstance(value, str):
        raise InvalidDicom(f"{keyword} is not a single UID value")
    if not is_valid_uid(value):
        shown = value[:80].encode("ascii", "backslashreplace").decode("ascii")
        raise InvalidDicom(f"{keyword} is not a valid UID (PS3.5 9.1): {shown!r}")
    return str(value)
