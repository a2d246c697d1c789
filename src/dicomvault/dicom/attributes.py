"""Attributes by keyword or tag, the query/retrieve levels, and what each level returns.

QIDO-RS names an attribute either by its keyword (``PatientID``) or by its tag as eight hex digits
(``00100020``), PS3.18 8.3.4.1. Keywords, tags and VRs come from pydicom's copy of the PS3.6 data
dictionary, not from a hand-typed table. The default return attributes per level are PS3.18
Tables 10.6.3-3 (study), 10.6.3-4 (series) and 10.6.3-5 (instance).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

__all__ = [
    "DEFAULT_RETURN_TAGS",
    "Attribute",
    "Level",
    "UnknownAttribute",
    "resolve_attribute",
    "tag_of",
]

_TAG_PATTERN = re.compile(r"[0-9A-Fa-f]{8}")


class Level(StrEnum):
    """Query/Retrieve levels of the Study Root information model (PS3.4 C.6.2)."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class UnknownAttribute(ValueError):
    """A name that is neither a data dictionary keyword nor an eight-hex-digit tag.

    Dotted sequence paths (``00081110.00081150``, PS3.18 8.3.4.1) are not supported and are
    reported the same way.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown attribute {name!r}")
        self.name = name


@dataclass(frozen=True)
class Attribute:
    """A data element of the PS3.6 dictionary: tag as ``GGGGEEEE`` upper-case hex, keyword, VR."""

    tag: str
    keyword: str
    vr: str


@lru_cache(maxsize=4096)
def resolve_attribute(name: str) -> Attribute:
    """Return the attribute that ``name`` (a keyword or an 8-hex-digit tag, any case) denotes.

    A tag outside the dictionary (private or retired-and-dropped) is unknown: it cannot be a
    matching key, and a keyword is needed to describe it. PS3.18 8.3.4.1.
    """
    if _TAG_PATTERN.fullmatch(name):
        tag = int(name, 16)
    else:
        found = tag_for_keyword(name)
        if found is None:
            raise UnknownAttribute(name)
        tag = found
    try:
        keyword = keyword_for_tag(tag)
        vr = dictionary_VR(tag)
    except KeyError:
        raise UnknownAttribute(name) from None
    if not keyword:
        raise UnknownAttribute(name)
    # Some elements have several possible VRs ("OB or OW", "US or SS"); the first is the usual one.
    return Attribute(tag=f"{tag:08X}", keyword=keyword, vr=vr.split(" or ")[0])


def tag_of(keyword: str) -> str:
    """Return the ``GGGGEEEE`` tag of a dictionary keyword (for building the tables below)."""
    return resolve_attribute(keyword).tag


def _tags(*keywords: str) -> frozenset[str]:
    return frozenset(tag_of(k) for k in keywords)


# PS3.18 Table 10.6.3-3, plus StudyDescription: the OHIF study list shows it and every archive
# it is used with returns it by default.
_STUDY_DEFAULTS = _tags(
    "SpecificCharacterSet",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "TimezoneOffsetFromUTC",
    "RetrieveURL",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)

# PS3.18 Table 10.6.3-4.
_SERIES_DEFAULTS = _tags(
    "SpecificCharacterSet",
    "Modality",
    "TimezoneOffsetFromUTC",
    "SeriesDescription",
    "RetrieveURL",
    "SeriesInstanceUID",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "RequestAttributesSequence",
)

# PS3.18 Table 10.6.3-5.
_INSTANCE_DEFAULTS = _tags(
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "TimezoneOffsetFromUTC",
    "RetrieveURL",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
)

DEFAULT_RETURN_TAGS: Mapping[Level, frozenset[str]] = {
    Level.STUDY: _STUDY_DEFAULTS,
    Level.SERIES: _SERIES_DEFAULTS,
    Level.INSTANCE: _INSTANCE_DEFAULTS,
}
