"""The DICOM JSON Model (PS3.18 Annex F) of a data set, with bulk data by reference.

Element conversion is pydicom's (``DataElement.to_json_dict``); this module walks the data set
itself so that every bulk data reference knows where it came from, bounds sequence nesting,
and tidies the few places where pydicom's output is looser than PS3.18 F.2 (group lengths,
empty sequences, empty PN components and empty values inside multi-valued strings).

Bulk data references are ``{"vr": ..., "BulkDataURI": "@@BULK_BASE@@/bulkdata/<path>"}``. The
server replaces the placeholder :data:`BULK_BASE` with the instance URL. ``<path>`` names the
element from the top of the data set: tags (8 uppercase hex digits) alternating with item
numbers (from 0), for example ``00540016/0/00181072``; :func:`resolve_bulk_path` reads it back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomvault.dicom.problems import BulkDataNotFound, DicomProblem, TooDeep

if TYPE_CHECKING:
    from dicomvault.dicom.parse import ParseLimits

__all__ = [
    "BULK_BASE",
    "INSTANCE_LEVEL_TAGS",
    "PIXEL_DATA_TAGS",
    "SERIES_LEVEL_TAGS",
    "STUDY_LEVEL_TAGS",
    "BulkPath",
    "bulk_data_uri",
    "data_set_to_json",
    "dumps",
    "filter_json",
    "format_bulk_path",
    "read_bulk_value",
    "resolve_bulk_path",
]

BULK_BASE = "@@BULK_BASE@@"

#: Float Pixel Data, Double Float Pixel Data, Pixel Data: always bulk data, never inline.
PIXEL_DATA_TAGS: frozenset[int] = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

BulkPath = list[tuple[int, int | None]]

_MAX_PATH_STEPS = 64
_TAG_TEXT = re.compile(r"^[0-9A-F]{8}$")
_INDEX_TEXT = re.compile(r"^(0|[1-9][0-9]{0,8})$")
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)

# Levels of the Study Root information model (PS3.4 C.6.2.1): the attributes each level owns,
# from the Patient and Study IEs (study), the Series and Equipment IEs (series) and the image /
# instance modules (instance); PS3.18 Table 10.6.1-5 and PS3.4 Tables C.6-5 and C.6-6.
# Specific Character Set and Timezone Offset From UTC belong to every level: they are needed to
# read the others. Computed attributes (NumberOfStudyRelatedSeries, ModalitiesInStudy, ...)
# are not in an instance and are added by the query layer.
_EVERY_LEVEL = ("00080005", "00080201")

STUDY_LEVEL_TAGS: frozenset[str] = frozenset(
    {
        *_EVERY_LEVEL,
        # General Study module (PS3.3 C.7.2.1)
        "00080020",  # StudyDate
        "00080030",  # StudyTime
        "00080050",  # AccessionNumber
        "00080051",  # IssuerOfAccessionNumberSequence
        "00080090",  # ReferringPhysicianName
        "00080096",  # ReferringPhysicianIdentificationSequence
        "00081030",  # StudyDescription
        "00081032",  # ProcedureCodeSequence
        "00081048",  # PhysiciansOfRecord
        "00081049",  # PhysiciansOfRecordIdentificationSequence
        "00081060",  # NameOfPhysiciansReadingStudy
        "00081062",  # PhysiciansReadingStudyIdentificationSequence
        "00081110",  # ReferencedStudySequence
        "0020000D",  # StudyInstanceUID
        "00200010",  # StudyID
        # Patient Study module (PS3.3 C.7.2.2)
        "00081080",  # AdmittingDiagnosesDescription
        "00081084",  # AdmittingDiagnosesCodeSequence
        "00101010",  # PatientAge
        "00101020",  # PatientSize
        "00101030",  # PatientWeight
        "00102180",  # Occupation
        "001021B0",  # AdditionalPatientHistory
        "001021C0",  # PregnancyStatus
        "00380010",  # AdmissionID
        # Patient module (PS3.3 C.7.1.1)
        "00081120",  # ReferencedPatientSequence
        "00100010",  # PatientName
        "00100020",  # PatientID
        "00100021",  # IssuerOfPatientID
        "00100022",  # TypeOfPatientID
        "00100024",  # IssuerOfPatientIDQualifiersSequence
        "00100030",  # PatientBirthDate
        "00100032",  # PatientBirthTime
        "00100040",  # PatientSex
        "00101000",  # OtherPatientIDs (retired, still sent)
        "00101001",  # OtherPatientNames
        "00101002",  # OtherPatientIDsSequence
        "00102160",  # EthnicGroup
        "00102201",  # PatientSpeciesDescription
        "00102202",  # PatientSpeciesCodeSequence
        "00102292",  # PatientBreedDescription
        "00102293",  # PatientBreedCodeSequence
        "00102297",  # ResponsiblePerson
        "00102298",  # ResponsiblePersonRole
        "00102299",  # ResponsibleOrganization
        "00104000",  # PatientComments
        "00120062",  # PatientIdentityRemoved
        "00120063",  # DeidentificationMethod
        "00120064",  # DeidentificationMethodCodeSequence
    }
)

SERIES_LEVEL_TAGS: frozenset[str] = frozenset(
    {
        *_EVERY_LEVEL,
        # General Series module (PS3.3 C.7.3.1)
        "00080021",  # SeriesDate
        "00080031",  # SeriesTime
        "00080060",  # Modality
        "0008103E",  # SeriesDescription
        "0008103F",  # SeriesDescriptionCodeSequence
        "00081050",  # PerformingPhysicianName
        "00081052",  # PerformingPhysicianIdentificationSequence
        "00081070",  # OperatorsName
        "00081072",  # OperatorIdentificationSequence
        "00081111",  # ReferencedPerformedProcedureStepSequence
        "00081250",  # RelatedSeriesSequence
        "00180015",  # BodyPartExamined
        "00181030",  # ProtocolName
        "00185100",  # PatientPosition
        "0020000E",  # SeriesInstanceUID
        "00200011",  # SeriesNumber
        "00200060",  # Laterality
        "00280108",  # SmallestPixelValueInSeries
        "00280109",  # LargestPixelValueInSeries
        "00400244",  # PerformedProcedureStepStartDate
        "00400245",  # PerformedProcedureStepStartTime
        "00400250",  # PerformedProcedureStepEndDate
        "00400251",  # PerformedProcedureStepEndTime
        "00400253",  # PerformedProcedureStepID
        "00400254",  # PerformedProcedureStepDescription
        "00400260",  # PerformedProtocolCodeSequence
        "00400275",  # RequestAttributesSequence
        "00400280",  # CommentsOnThePerformedProcedureStep
        # General Equipment module (PS3.3 C.7.5.1): the Equipment IE is per series
        "00080070",  # Manufacturer
        "00080080",  # InstitutionName
        "00081010",  # StationName
        "00081040",  # InstitutionalDepartmentName
        "00081090",  # ManufacturerModelName
        "00181000",  # DeviceSerialNumber
        "00181020",  # SoftwareVersions
        # Frame of Reference module (PS3.3 C.7.4.1)
        "00200052",  # FrameOfReferenceUID
        "00201040",  # PositionReferenceIndicator
    }
)

INSTANCE_LEVEL_TAGS: frozenset[str] = frozenset(
    {
        *_EVERY_LEVEL,
        # SOP Common module (PS3.3 C.12.1)
        "00080012",  # InstanceCreationDate
        "00080013",  # InstanceCreationTime
        "00080014",  # InstanceCreatorUID
        "00080016",  # SOPClassUID
        "00080018",  # SOPInstanceUID
        "00083002",  # AvailableTransferSyntaxUID (PS3.18 Table 10.6.1-5, added by the archive)
        # General Image / General Acquisition modules (PS3.3 C.7.6.1, C.7.10.1)
        "00080008",  # ImageType
        "00080022",  # AcquisitionDate
        "00080023",  # ContentDate
        "0008002A",  # AcquisitionDateTime
        "00080032",  # AcquisitionTime
        "00080033",  # ContentTime
        "00200012",  # AcquisitionNumber
        "00200013",  # InstanceNumber
        "00200020",  # PatientOrientation
        "00282110",  # LossyImageCompression
        # Image Pixel / Multi-frame modules (PS3.3 C.7.6.3, C.7.6.6)
        "00280002",  # SamplesPerPixel
        "00280004",  # PhotometricInterpretation
        "00280008",  # NumberOfFrames
        "00280010",  # Rows
        "00280011",  # Columns
        "00280100",  # BitsAllocated
        "00280101",  # BitsStored
        "00280102",  # HighBit
        "00280103",  # PixelRepresentation
        # SR Document General / Presentation State / Encapsulated Document (PS3.4 C.6-6 notes)
        "0040A032",  # ObservationDateTime
        "0040A043",  # ConceptNameCodeSequence
        "0040A073",  # VerifyingObserverSequence
        "0040A491",  # CompletionFlag
        "0040A493",  # VerificationFlag
        "0040A504",  # ContentTemplateSequence
        "00420010",  # DocumentTitle
        "00420012",  # MIMETypeOfEncapsulatedDocument
        "00700080",  # ContentLabel
        "00700081",  # ContentDescription
        "00700082",  # PresentationCreationDate
        "00700083",  # PresentationCreationTime
        "00700084",  # ContentCreatorName
    }
)


def bulk_data_uri(path: str) -> str:
    """The placeholder BulkDataURI of the element at ``path`` (PS3.18 F.2.6)."""
    return f"{BULK_BASE}/bulkdata/{path}"


def format_bulk_path(steps: Sequence[tuple[int, int | None]]) -> str:
    """Write (tag, item) steps as a bulk data path, e.g. ``00540016/0/00181072``.

    The inverse of :func:`resolve_bulk_path`.
    """
    parts: list[str] = []
    for tag, index in steps:
        parts.append(f"{tag:08X}")
        if index is not None:
            parts.append(str(index))
    return "/".join(parts)


def resolve_bulk_path(path: str) -> BulkPath:
    """Read a bulk data path back into (tag, item number or ``None``) steps.

    The last step names the element (item ``None``); every earlier step names a sequence and
    the item within it. Raises :class:`BulkDataNotFound` for anything else, so that a path from
    a URL can be passed straight in.
    """
    parts = path.strip("/").split("/")
    if len(parts) % 2 != 1 or len(parts) > 2 * _MAX_PATH_STEPS - 1:
        raise BulkDataNotFound("bulk data path must alternate tags and item numbers")
    steps: BulkPath = []
    for position in range(0, len(parts), 2):
        tag_text = parts[position].upper()
        if not _TAG_TEXT.fullmatch(tag_text):
            raise BulkDataNotFound("bulk data path has a malformed tag")
        index: int | None = None
        if position + 1 < len(parts):
            if not _INDEX_TEXT.fullmatch(parts[position + 1]):
                raise BulkDataNotFound("bulk data path has a malformed item number")
            index = int(parts[position + 1])
        steps.append((int(tag_text, 16), index))
    return steps


def filter_json(full: Mapping[str, Any], tags: Iterable[str]) -> dict[str, Any]:
    """The elements of a DICOM JSON object whose tags are in ``tags``, in tag order."""
    wanted = {tag.upper() for tag in tags}
    return {key: full[key] for key in sorted(full) if key in wanted}


def dumps(obj: Mapping[str, Any]) -> bytes:
    """Serialise DICOM JSON with orjson; anything unexpected becomes its string form."""
    return orjson.dumps(obj, default=str)


def data_set_to_json(
    data_set: Dataset,
    *,
    bulk_data_threshold: int = 1024,
    max_depth: int = 32,
    path: Sequence[tuple[int, int | None]] = (),
) -> dict[str, Any]:
    """The DICOM JSON object (PS3.18 F.2) of ``data_set``, bulk values by reference.

    Binary values longer than ``bulk_data_threshold`` (as pydicom measures it) and every
    pixel data element become BulkDataURI placeholders; see the module docstring. Group
    lengths (gggg,0000) are left out. Sequences nested deeper than ``max_depth`` raise
    :class:`TooDeep`. An element pydicom cannot convert is kept as ``{"vr": ...}`` (tolerant
    reading), so one bad value never loses the whole instance.
    """
    if len(path) > max_depth:
        raise TooDeep(f"sequences are nested more than {max_depth} deep")
    result: dict[str, Any] = {}
    for tag in sorted(data_set.keys()):
        if tag & 0xFFFF == 0:
            continue  # group length, not part of the JSON model
        try:
            element = data_set[tag]
        except (DicomProblem, RecursionError):
            raise
        except Exception:  # tolerant reading: keep the element, drop its value
            raw_vr = getattr(data_set.get_item(tag), "VR", None)
            result[f"{tag:08X}"] = {"vr": _json_vr(raw_vr)}
            continue
        result[f"{tag:08X}"] = _element_to_json(
            element, [*path, (int(tag), None)], bulk_data_threshold, max_depth
        )
    return result


def _element_to_json(
    element: DataElement,
    path: list[tuple[int, int | None]],
    bulk_data_threshold: int,
    max_depth: int,
) -> dict[str, Any]:
    """One element's JSON (PS3.18 F.2.2-F.2.7)."""
    vr = _json_vr(element.VR)
    if vr == "SQ":
        items = element.value or []
        if not items:
            return {"vr": "SQ"}
        return {
            "vr": "SQ",
            "Value": [
                data_set_to_json(
                    item,
                    bulk_data_threshold=bulk_data_threshold,
                    max_depth=max_depth,
                    path=[*path[:-1], (path[-1][0], number)],
                )
                for number, item in enumerate(items)
            ],
        }
    if element.tag in PIXEL_DATA_TAGS:
        if element.is_empty:
            return {"vr": vr}
        return {"vr": vr, "BulkDataURI": bulk_data_uri(format_bulk_path(path))}
    uri = bulk_data_uri(format_bulk_path(path))
    handler: Callable[[DataElement], str] = lambda _element: uri  # noqa: E731
    try:
        converted: dict[str, Any] = element.to_json_dict(handler, bulk_data_threshold)
    except (DicomProblem, RecursionError):
        raise
    except Exception:  # e.g. an IS that is not a number: keep the element
        return {"vr": vr}
    converted["vr"] = vr
    return _tidy_values(converted, vr)


def _json_vr(vr: object) -> str:
    """A single two-letter VR for JSON: ambiguous "US or SS"-style VRs take the first choice."""
    text = str(vr) if vr else "UN"
    return text.split(" or ")[0] if " or " in text else text


def _tidy_values(converted: dict[str, Any], vr: str) -> dict[str, Any]:
    """Empty values inside a multi-valued element are ``null`` (PS3.18 F.2.5); a PN drops its
    empty component groups (PS3.18 F.2.2)."""
    values = converted.get("Value")
    if not isinstance(values, list):
        return converted
    if vr == "PN":
        tidied: list[Any] = []
        for value in values:
            groups = (
                {name: text for name, text in value.items() if text}
                if isinstance(value, dict)
                else None
            )
            tidied.append(groups or None)
        values = tidied
    elif vr in _TEXT_VRS:
        values = [None if value == "" else value for value in values]
    if all(value is None for value in values):
        return {"vr": vr}
    converted["Value"] = values
    return converted


def read_bulk_value(file_path: Path, tag_path: str, limits: ParseLimits | None = None) -> bytes:
    """The value of the bulk data element at ``tag_path`` in the file (see ``parse``)."""
    from dicomvault.dicom.parse import ParseLimits
    from dicomvault.dicom.parse import read_bulk_value as read

    return read(file_path, tag_path, limits or ParseLimits())
