"""Attribute matching of PS3.4 C.2.2.2, as value objects, with a Python reference semantics.

A query value becomes one condition:

* empty (or a lone ``*``): universal matching, C.2.2.2.3 -> ``None``;
* a list of UIDs separated by ``\\`` (or ``,``, as QIDO clients send them), C.2.2.2.2 ->
  :class:`UidList`; a backslash list of code strings (``ModalitiesInStudy=CT\\MR``) ->
  :class:`ValueList` (an extension many archives and OHIF rely on);
* ``*`` / ``?`` in a text value, C.2.2.2.4 -> :class:`Wildcard`;
* ``low-high``, ``-high``, ``low-`` for DA, TM and DT, C.2.2.2.5 -> :class:`DateTimeRange`;
* a Person Name with ``fuzzymatching=true``, PS3.18 8.3.4.6.1 -> :class:`FuzzyPersonName`;
* anything else: single value matching, C.2.2.2.1 -> :class:`SingleValue`.

Each condition has ``matches(value)``: the reference the SQL translation in ``index/search.py`` is
tested against. Fuzzy person-name matching (our reading of PS3.18 8.3.4.6.1, which leaves the
algorithm to the origin server): case-insensitive, and every word of the query must be a prefix of
some component or word of the stored name. So ``doe`` matches ``Doe^John`` and ``Smith^Doe``, and
``jo do`` matches ``Doe^John``.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from functools import lru_cache

from dicomvault.dicom.attributes import Attribute

__all__ = [
    "AttributeMatch",
    "Condition",
    "DateTimeRange",
    "FuzzyPersonName",
    "InvalidMatchValue",
    "SingleValue",
    "UidList",
    "ValueList",
    "Wildcard",
    "fuzzy_words",
    "parse_condition",
    "upper_bound",
]

# VRs on which wildcards are not allowed (C.2.2.2.4); a lone "*" is still universal matching.
_NO_WILDCARD_VRS = frozenset(
    {"DA", "TM", "DT", "SL", "SS", "US", "UL", "SV", "UV", "FL", "FD", "OB", "OW", "OF", "OD",
     "OL", "OV", "UN", "AT", "DS", "IS", "AS", "UI", "SQ"}
)  # fmt: skip
_INTEGER_VRS = frozenset({"IS", "SL", "SS", "US", "UL", "SV", "UV"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
# Loose on purpose: a query for a legacy UID with a leading zero must still find it.
_UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
_DA_PATTERN = re.compile(r"[0-9]{8}")
_TM_PATTERN = re.compile(r"([0-9]{2})(([0-9]{2})(([0-9]{2})(\.[0-9]{1,6})?)?)?")
_DT_PATTERN = re.compile(
    r"(?P<body>[0-9]{4}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?)?)?)?)"
    r"(?P<offset>[+-][0-9]{4})?"
)
# The largest value of each position, for the inclusive upper end of a range given to a
# coarser precision than the stored value ("-1010" includes 10:10:59.999999).
_UPPER_FILL = {"DA": "99999999", "TM": "999999.999999", "DT": "99999999999999.999999"}
_PN_WORD_SEPARATORS = re.compile(r"[\^= ,]+")


class InvalidMatchValue(ValueError):
    """A query value that the matching rules of PS3.4 C.2.2.2 cannot interpret."""


@dataclass(frozen=True)
class SingleValue:
    """Single value matching (C.2.2.2.1): equal, case-sensitive."""

    value: str

    def matches(self, value: str | None) -> bool:
        return value == self.value


@dataclass(frozen=True)
class Wildcard:
    """Wildcard matching (C.2.2.2.4): ``*`` any run of characters, ``?`` exactly one.

    ``ignore_case`` is set for Person Names under fuzzy matching; the pattern is then upper-case.
    """

    pattern: str
    ignore_case: bool = False

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.ignore_case:
            value = value.upper()
        return _wildcard_regex(self.pattern).fullmatch(value) is not None

    def like_pattern(self, escape: str = "\\") -> str:
        """The SQL ``LIKE`` pattern; ``%``, ``_`` and the escape character match literally."""
        out = []
        for char in self.pattern:
            if char == "*":
                out.append("%")
            elif char == "?":
                out.append("_")
            elif char in ("%", "_", escape):
                out.append(escape + char)
            else:
                out.append(char)
        return "".join(out)

    def glob_pattern(self) -> str:
        """The SQLite ``GLOB`` pattern (case-sensitive, unlike SQLite's ``LIKE``)."""
        out = []
        for char in self.pattern:
            if char in "*?":
                out.append(char)
            elif char in "[]":
                out.append(f"[{char}]")
            else:
                out.append(char)
        return "".join(out)


@dataclass(frozen=True)
class UidList:
    """List of UID matching (C.2.2.2.2): equal to any of them."""

    uids: tuple[str, ...]

    def matches(self, value: str | None) -> bool:
        return value in self.uids


@dataclass(frozen=True)
class ValueList:
    """Any of several code strings (``ModalitiesInStudy=CT\\MR``)."""

    values: tuple[str, ...]

    def matches(self, value: str | None) -> bool:
        return value in self.values


@dataclass(frozen=True)
class DateTimeRange:
    """Range matching (C.2.2.2.5) for DA, TM and DT; either end may be open (``None``).

    Both ends are inclusive. ``high`` is compared at the precision it was given in: it is filled
    with nines (:func:`upper_bound`), so ``-1010`` includes ``101030``. Stored values are compared
    as text, which orders DICOM DA/TM/DT values correctly; DT time-zone offsets are ignored.
    """

    vr: str
    low: str | None
    high: str | None

    def matches(self, value: str | None) -> bool:
        if value is None or value == "":
            return False
        if self.low is not None and value < self.low:
            return False
        return not (self.high is not None and value > upper_bound(self.vr, self.high))


@dataclass(frozen=True)
class FuzzyPersonName:
    """Fuzzy Person Name matching (PS3.18 8.3.4.6.1), see the module docstring.

    ``words`` are upper-case; a stored name matches when each word is a prefix of one of its
    words (split at ``^``, ``=``, space and comma).
    """

    value: str

    @property
    def words(self) -> tuple[str, ...]:
        return fuzzy_words(self.value)

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        stored = fuzzy_words(value)
        return all(any(s.startswith(w) for s in stored) for w in self.words)


Condition = SingleValue | Wildcard | UidList | ValueList | DateTimeRange | FuzzyPersonName


@dataclass(frozen=True)
class AttributeMatch:
    """One matching key of a query: the attribute and its condition."""

    attribute: Attribute
    condition: Condition


def fuzzy_words(value: str) -> tuple[str, ...]:
    """Upper-case words of a Person Name, split at component, group and word separators."""
    return tuple(w for w in _PN_WORD_SEPARATORS.split(value.upper()) if w)


def upper_bound(vr: str, high: str) -> str:
    """Fill ``high`` with the largest digit at each missing position (keeping the ``.``)."""
    fill = _UPPER_FILL.get(vr, "")
    return high + fill[len(high) :] if len(high) < len(fill) else high


@lru_cache(maxsize=1024)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def parse_condition(attribute: Attribute, raw: str, fuzzy: bool = False) -> Condition | None:
    """Interpret the query value ``raw`` for ``attribute`` under PS3.4 C.2.2.2.

    Returns ``None`` for universal matching. Raises :class:`InvalidMatchValue` when ``raw`` is not
    a valid value of the attribute's VR (a malformed date, a wildcard in a UID, a non-integer IS).
    """
    vr = attribute.vr
    if raw == "" or set(raw) == {"*"}:
        return None
    if vr == "UI":
        return _parse_uids(raw)
    if vr in _RANGE_VRS:
        return _parse_date_time(vr, raw)
    if vr in _INTEGER_VRS:
        return _parse_integer(raw)
    if "\\" in raw:
        return _parse_value_list(vr, raw)
    has_wildcard = "*" in raw or "?" in raw
    if has_wildcard and vr in _NO_WILDCARD_VRS:
        raise InvalidMatchValue(f"wildcards are not allowed for VR {vr}")
    if vr == "PN" and fuzzy:
        if has_wildcard:
            return Wildcard(raw.upper(), ignore_case=True)
        if not fuzzy_words(raw):
            return None
        return FuzzyPersonName(raw)
    if has_wildcard:
        return Wildcard(raw)
    return SingleValue(raw)


def _parse_uids(raw: str) -> SingleValue | UidList:
    uids = tuple(u.strip() for u in re.split(r"[\\,]", raw))
    for uid in uids:
        if len(uid) > 64 or not _UID_PATTERN.fullmatch(uid):
            raise InvalidMatchValue("not a UID or list of UIDs")
    unique = tuple(dict.fromkeys(uids))
    return SingleValue(unique[0]) if len(unique) == 1 else UidList(unique)


def _parse_integer(raw: str) -> SingleValue:
    text = raw.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
        raise InvalidMatchValue("not an integer")
    return SingleValue(str(int(text)))


def _parse_value_list(vr: str, raw: str) -> ValueList:
    if vr != "CS":
        raise InvalidMatchValue(f"a list of values is not allowed for VR {vr}")
    values = tuple(dict.fromkeys(v for v in raw.split("\\") if v))
    if not values or any("*" in v or "?" in v for v in values):
        raise InvalidMatchValue("a list of values must not be empty or contain wildcards")
    return ValueList(values)


def _parse_date_time(vr: str, raw: str) -> SingleValue | DateTimeRange:
    if "-" not in raw or (vr == "DT" and _valid_date_time(vr, raw)):
        if not _valid_date_time(vr, raw):
            raise InvalidMatchValue(f"not a valid {vr} value")
        return SingleValue(_strip_offset(vr, raw))
    for index in (i for i, c in enumerate(raw) if c == "-"):
        low, high = raw[:index], raw[index + 1 :]
        if (low or high) and all(not v or _valid_date_time(vr, v) for v in (low, high)):
            return DateTimeRange(
                vr, _strip_offset(vr, low) or None, _strip_offset(vr, high) or None
            )
    raise InvalidMatchValue(f"not a valid {vr} value or range")


def _strip_offset(vr: str, value: str) -> str:
    if vr != "DT" or not value:
        return value
    found = _DT_PATTERN.fullmatch(value)
    return found.group("body") if found else value


def _valid_date_time(vr: str, value: str) -> bool:
    if vr == "DA":
        return _DA_PATTERN.fullmatch(value) is not None and _real_date(value)
    if vr == "TM":
        found = _TM_PATTERN.fullmatch(value)
        return found is not None and _real_time(value.split(".")[0])
    found = _DT_PATTERN.fullmatch(value)
    if found is None:
        return False
    body = found.group("body").split(".")[0]
    # Missing month and day (YYYY, YYYYMM) stand for the first of the period.
    year_month_day = body[:8] + "0101"[max(0, len(body) - 4) :]
    return _real_date(year_month_day) and _real_time(body[8:])


def _real_date(yyyymmdd: str) -> bool:
    try:
        datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def _real_time(hhmmss: str) -> bool:
    """Hours < 24, minutes < 60, seconds < 61 (a leap second is allowed, PS3.5 6.2)."""
    limits = (24, 60, 61)
    pairs = [hhmmss[i : i + 2] for i in range(0, len(hhmmss), 2)]
    return all(int(p) < limit for p, limit in zip(pairs, limits, strict=False))
