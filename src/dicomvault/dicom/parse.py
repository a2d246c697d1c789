"""Turn a spooled Part-10 file into validated, index-ready facts (the validation step of ingest).

Everything in the file is untrusted. The file is read in three passes, none of which loads
Pixel Data:

1. The preamble, ``DICM`` prefix and File Meta Information (PS3.10 7.1), read element by
   element with every length checked against the file size.
2. A structural walk of the whole data set (PS3.5 7): element headers only, values skipped with
   seeks, every length checked against its enclosing item, sequence or file, sequence nesting
   counted without recursion. It finds where the Pixel Data element starts and, for
   encapsulated data, each fragment (PS3.5 A.4). It mirrors pydicom's tolerance (implicit VR
   inside explicit VR sequences, unknown VRs, undefined-length UN as a sequence) so both agree.
3. pydicom reads the elements before Pixel Data, now known to be well formed.

A Deflated data set (PS3.5 A.5) is inflated first, with a cap, into a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, AllTransferSyntaxes, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dicomvault.dicom.dicomjson import (
    INSTANCE_LEVEL_TAGS,
    PIXEL_DATA_TAGS,
    SERIES_LEVEL_TAGS,
    STUDY_LEVEL_TAGS,
    bulk_data_uri,
    data_set_to_json,
    dumps,
    filter_json,
    format_bulk_path,
    resolve_bulk_path,
)
from dicomvault.dicom.inflate import inflate_data_set
from dicomvault.dicom.pixels import (
    ITEM_DELIMITER_TAG,
    ITEM_TAG,
    SEQUENCE_DELIMITER_TAG,
    UNDEFINED_LENGTH,
    Fragment,
    PixelDataInfo,
    map_fragments_to_frames,
    native_frame_length,
    walk_fragments,
)
from dicomvault.dicom.problems import (
    BulkDataNotFound,
    DicomProblem,
    InvalidDicom,
    MissingAttributes,
    TooDeep,
)
from dicomvault.dicom.uids import require_uid

__all__ = [
    "INDEX_KEYWORDS",
    "ParseLimits",
    "ParsedInstance",
    "PixelDataInfo",
    "read_bulk_value",
    "read_instance_header",
]

PREAMBLE_LENGTH = 128
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: str = DeflatedExplicitVRLittleEndian
_MAX_META_BYTES = 1024 * 1024
_LONG_VRS = frozenset(vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
_KNOWN_VRS = frozenset(str(vr).encode("ascii") for vr in VR if len(str(vr)) == 2)
_KNOWN_TRANSFER_SYNTAXES = frozenset(str(uid) for uid in AllTransferSyntaxes)

#: Flat index values, by keyword (see :attr:`ParsedInstance.values`).
INDEX_KEYWORDS: tuple[str, ...] = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "PerformedProcedureStepStartDate",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SpecificCharacterSet",
)
_INTEGER_KEYWORDS = frozenset(
    {"SeriesNumber", "InstanceNumber", "Rows", "Columns", "NumberOfFrames"}
)


@dataclass(frozen=True)
class ParseLimits:
    """Caps on untrusted input: the inflated size and compression ratio of a Deflated data set
    (the ratio is only checked past 32 MiB of output, see ``inflate``), sequence nesting."""

    max_inflated_bytes: int = 512 * 1024 * 1024
    max_sequence_depth: int = 32
    max_inflation_ratio: int | None = 250


@dataclass(frozen=True)
class ParsedInstance:
    """What ingest needs from one instance: UIDs, index values, DICOM JSON, pixel location.

    ``values`` holds the flat index values of :data:`INDEX_KEYWORDS` (``None`` when absent):
    strings as stored (PN as the DICOM string, e.g. ``"Doe^John"``; multiple values joined with
    ``\\``), IS and US values as ``int``. ``metadata_json`` is the whole data set (not the File
    Meta Information) as a DICOM JSON object with bulk data by reference (see ``dicomjson``).
    ``pixel_data`` is ``None`` when there is no Pixel Data and for Deflated files, whose
    offsets would refer to the inflated stream: frames of those are served by decoding.
    """

    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    values: Mapping[str, str | int | None]
    study_json: dict[str, Any]
    series_json: dict[str, Any]
    instance_json: dict[str, Any]
    metadata_json: bytes
    pixel_data: PixelDataInfo | None
    nonstandard_preamble: bool


# --------------------------------------------------------------------------------------------
# Pass 1: preamble and File Meta Information (PS3.10 7.1)


@dataclass
class _Source:
    """The data set to read: a stream, where the data set starts and ends, its encoding."""

    stream: IO[bytes]
    start: int
    end: int
    transfer_syntax: UID
    file_meta: FileMetaDataset
    nonstandard_preamble: bool

    @property
    def deflated(self) -> bool:
        return str(self.transfer_syntax) == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN


@contextlib.contextmanager
def _open_source(path: Path, limits: ParseLimits) -> Iterator[_Source]:
    """Open ``path``, check the Part-10 framing, and yield its data set (inflated if need be)."""
    try:
        file = path.open("rb")
    except OSError as exc:
        raise InvalidDicom(f"cannot open the file: {exc.strerror}") from None
    with file:
        size = os.fstat(file.fileno()).st_size
        preamble = file.read(PREAMBLE_LENGTH)
        if len(preamble) < PREAMBLE_LENGTH or file.read(4) != b"DICM":
            raise InvalidDicom(
                "not a DICOM Part-10 file: no 128-byte preamble followed by 'DICM' (PS3.10 7.1)"
            )
        file_meta, meta_end = _read_file_meta(file, size)
        transfer_syntax = _transfer_syntax(file_meta)
        nonstandard = preamble != bytes(PREAMBLE_LENGTH)
        if str(transfer_syntax) != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            yield _Source(file, meta_end, size, transfer_syntax, file_meta, nonstandard)
            return
        file.seek(meta_end)
        inflated, inflated_size = inflate_data_set(
            file, limits.max_inflated_bytes, limits.max_inflation_ratio
        )
        with inflated:
            yield _Source(inflated, 0, inflated_size, transfer_syntax, file_meta, nonstandard)


def _read_file_meta(file: IO[bytes], size: int) -> tuple[FileMetaDataset, int]:
    """Read the group 0002 elements after ``DICM``; return them and where the data set starts.

    File Meta Information is always Explicit VR Little Endian (PS3.10 7.1); its end is found by
    walking element headers until the group changes, each length checked against the file.
    """
    position = PREAMBLE_LENGTH + 4
    file.seek(position)
    while True:
        header = file.read(8)
        if len(header) < 8:
            if header:
                raise InvalidDicom("File Meta Information is truncated")
            break
        group, element, vr, length = struct.unpack("<HH2sH", header)
        if group != 0x0002:
            break
        header_length = 8
        if vr in _LONG_VRS:
            extra = file.read(4)
            if len(extra) < 4:
                raise InvalidDicom("File Meta Information is truncated")
            (length,) = struct.unpack("<L", extra)
            header_length = 12
        if vr not in _KNOWN_VRS or vr == b"SQ" or length == UNDEFINED_LENGTH:
            raise InvalidDicom(
                f"File Meta Information element (0002,{element:04X}) is not Explicit VR "
                "Little Endian (PS3.10 7.1)"
            )
        position += header_length + length
        if position > size or position - PREAMBLE_LENGTH > _MAX_META_BYTES:
            raise InvalidDicom(
                f"File Meta Information element (0002,{element:04X}) runs past the end of file"
            )
        file.seek(position)
    if position == PREAMBLE_LENGTH + 4:
        raise InvalidDicom("File Meta Information is missing (PS3.10 7.1)")
    file.seek(PREAMBLE_LENGTH + 4)
    try:
        length = position - PREAMBLE_LENGTH - 4
        raw = read_dataset(cast(BinaryIO, file), False, True, bytelength=length)
        meta = FileMetaDataset(raw)
    except (DicomProblem, RecursionError):
        raise
    except Exception:
        raise InvalidDicom("File Meta Information cannot be read (PS3.10 7.1)") from None
    return meta, position


def _transfer_syntax(file_meta: FileMetaDataset) -> UID:
    """The Transfer Syntax UID (0002,0010): present, valid, and one pydicom knows (PS3.5 10)."""
    try:
        value = file_meta.get("TransferSyntaxUID")
    except Exception:
        raise InvalidDicom("TransferSyntaxUID cannot be read") from None
    if value is None or value == "":
        raise InvalidDicom("File Meta Information has no TransferSyntaxUID (PS3.10 7.1)")
    try:
        uid = require_uid(value, "TransferSyntaxUID")
    except MissingAttributes as exc:
        raise InvalidDicom(exc.message) from None
    if uid not in _KNOWN_TRANSFER_SYNTAXES:
        raise InvalidDicom(f"unsupported transfer syntax {uid}")
    return UID(uid)


# --------------------------------------------------------------------------------------------
# Pass 2: structural walk of the data set (PS3.5 7.1, 7.5, A.4)


@dataclass
class _Container:
    """An open data set (item) or sequence during the walk."""

    is_sequence: bool
    end: int | None  # defined end, or None for undefined length
    limit: int  # the nearest defined end above: no value may pass it
    little: bool
    implicit: bool | None  # None: decide at the item's first element, as pydicom does


@dataclass(frozen=True)
class _PixelElement:
    """A top-level pixel data element found by the walk."""

    tag: int
    vr: str
    header_offset: int
    value_offset: int
    length: int | None
    items: tuple[Fragment, ...] | None


@dataclass
class _Structure:
    """What the walk learned: where pydicom must stop, where the pixel data elements are."""

    header_end: int
    pixel_elements: list[_PixelElement] = field(default_factory=list)


class _Walker:
    """The structural walk of one data set: an explicit stack instead of recursion.

    Raises :class:`InvalidDicom` for a truncated file, a length past its enclosing value or the
    end of file, misplaced item tags or delimiters, or top-level elements out of ascending tag
    order (PS3.5 7.1; garbage after the data set shows up as one of these), and
    :class:`TooDeep` beyond ``limits.max_sequence_depth`` nested sequences.
    """

    def __init__(self, source: _Source, limits: ParseLimits) -> None:
        ts = source.transfer_syntax
        self.stream = source.stream
        self.end = source.end
        self.max_depth = limits.max_sequence_depth
        self.declared_implicit = bool(ts.is_implicit_VR)
        self.root = _Container(False, source.end, source.end, bool(ts.is_little_endian), None)
        self.stack = [self.root]
        self.depth = 0
        self.position = source.start
        self.last_top_tag = -1
        self.structure = _Structure(header_end=source.end)

    def run(self) -> _Structure:
        self.stream.seek(self.position)
        while True:
            top = self.stack[-1]
            if top.end is not None and self.position >= top.end:
                if self.position > top.end:
                    raise InvalidDicom(
                        f"element at offset {self.position} overruns its enclosing value"
                    )
                if top is self.root:
                    return self.structure
                self._pop()
            elif top.is_sequence:
                self._item(top)
            else:
                self._element(top)

    def _push(self, container: _Container) -> None:
        if container.is_sequence:
            self.depth += 1
            if self.depth > self.max_depth:
                raise TooDeep(f"sequences are nested more than {self.max_depth} deep")
        self.stack.append(container)

    def _pop(self) -> None:
        if self.stack.pop().is_sequence:
            self.depth -= 1

    def _read(self, count: int) -> bytes:
        data = self.stream.read(count)
        if len(data) < count:
            raise InvalidDicom(f"data set is truncated at offset {self.position}")
        return data

    def _item(self, sequence: _Container) -> None:
        """An Item or Sequence Delimitation Item inside a sequence (PS3.5 7.5)."""
        endian = "<" if sequence.little else ">"
        group, element, length = struct.unpack(endian + "HHL", self._read(8))
        tag = group << 16 | element
        at = self.position
        self.position += 8
        if tag == SEQUENCE_DELIMITER_TAG and sequence.end is None:
            self._pop()
            return
        if tag != ITEM_TAG:
            raise InvalidDicom(f"expected an item at offset {at} (PS3.5 7.5)")
        # pydicom reads items of an implicit VR sequence as implicit VR, and otherwise decides
        # at the item's first element (PS3.5 6.2.2 allows implicit VR items in UN sequences).
        implicit = True if sequence.implicit else None
        if length == UNDEFINED_LENGTH:
            self._push(_Container(False, None, sequence.limit, sequence.little, implicit))
            return
        end = self.position + length
        if end > sequence.limit:
            raise InvalidDicom(f"item at offset {at} runs past its enclosing value")
        self._push(_Container(False, end, end, sequence.little, implicit))

    def _element(self, item: _Container) -> None:
        """One data element header in a data set; skip or descend into its value."""
        at = self.position
        if item.implicit is None:
            item.implicit = self._first_element_is_implicit()
        endian = "<" if item.little else ">"
        header = self._read(8)
        group, element = struct.unpack(endian + "HH", header[:4])
        tag = group << 16 | element
        if tag == ITEM_DELIMITER_TAG:
            if item is self.root or item.end is not None:
                raise InvalidDicom(f"unexpected Item Delimitation Item at offset {at}")
            self.position += 8
            self._pop()
            return
        if tag in (ITEM_TAG, SEQUENCE_DELIMITER_TAG):
            raise InvalidDicom(f"unexpected item tag at offset {at} (PS3.5 7.5)")
        vr, length, header_length = self._element_header(header, item.implicit, endian)
        value_offset = at + header_length
        at_top = item is self.root
        if at_top:
            self._check_order(tag, at)
        if self._is_sequence(tag, vr, length, endian):
            end = None if length == UNDEFINED_LENGTH else value_offset + length
            if end is not None and end > item.limit:
                raise InvalidDicom(f"sequence at offset {at} runs past its enclosing value")
            limit = item.limit if end is None else end
            self._push(_Container(True, end, limit, item.little, item.implicit))
            self.position = value_offset
            self.stream.seek(value_offset)
            return
        items: tuple[Fragment, ...] | None = None
        if length == UNDEFINED_LENGTH:
            items = tuple(walk_fragments(self.stream, value_offset, item.limit))
            self.position = self.stream.tell()
        else:
            if value_offset + length > item.limit:
                raise InvalidDicom(
                    f"element ({group:04X},{element:04X}) at offset {at} has a length past "
                    "the end of its enclosing value or of the file"
                )
            self.position = value_offset + length
            self.stream.seek(self.position)
        if at_top and tag in PIXEL_DATA_TAGS:
            self.structure.pixel_elements.append(
                _PixelElement(
                    tag,
                    vr or _IMPLICIT_PIXEL_VR[tag],
                    at,
                    value_offset,
                    None if length == UNDEFINED_LENGTH else length,
                    items,
                )
            )

    def _check_order(self, tag: int, at: int) -> None:
        """Top-level tags ascend (PS3.5 7.1); note where pixel data begins."""
        if tag <= self.last_top_tag:
            raise InvalidDicom(
                f"data set elements out of order, or garbage, at offset {at} (PS3.5 7.1)"
            )
        self.last_top_tag = tag
        if tag in PIXEL_DATA_TAGS and self.structure.header_end == self.end:
            self.structure.header_end = at

    def _first_element_is_implicit(self) -> bool:
        """pydicom's test (``filereader._is_implicit_vr``): is the VR field two capitals?"""
        peek = self.stream.read(6)
        self.stream.seek(self.position)
        if len(peek) < 6:
            return self.declared_implicit if self.stack[-1] is self.root else False
        return not (0x40 < peek[4] < 0x5B and 0x40 < peek[5] < 0x5B)

    def _element_header(
        self, header: bytes, implicit: bool, endian: str
    ) -> tuple[str | None, int, int]:
        """(VR or None for implicit, value length, header length), as pydicom reads them."""
        if implicit:
            return None, struct.unpack(endian + "L", header[4:])[0], 8
        vr = header[4:6]
        if vr in _KNOWN_VRS:
            if vr in _LONG_VRS:
                return vr.decode("ascii"), struct.unpack(endian + "L", self._read(4))[0], 12
            return vr.decode("ascii"), struct.unpack(endian + "H", header[6:])[0], 8
        if not (b"AA" <= vr <= b"ZZ"):
            # A writer switched to implicit VR (pydicom's assume_implicit_vr_switch).
            return None, struct.unpack(endian + "L", header[4:])[0], 8
        # An unknown VR: pydicom assumes a 2-byte length.
        return vr.decode("ascii"), struct.unpack(endian + "H", header[6:])[0], 8

    def _is_sequence(self, tag: int, vr: str | None, length: int, endian: str) -> bool:
        """Whether pydicom will parse this element's value as a sequence."""
        if vr == "SQ":
            return True
        if vr is None:
            try:
                return dictionary_VR(tag) == "SQ"
            except KeyError:
                if length != UNDEFINED_LENGTH:
                    return False
            # An unknown undefined-length element is a sequence if an item follows.
            peek = self.stream.read(4)
            self.stream.seek(self.stream.tell() - len(peek))
            return len(peek) == 4 and struct.unpack(endian + "HH", peek) == (0xFFFE, 0xE000)
        # PS3.5 6.2.2: UN of undefined length is a sequence.
        return vr == "UN" and length == UNDEFINED_LENGTH


_IMPLICIT_PIXEL_VR = {0x7FE00008: "OF", 0x7FE00009: "OD", 0x7FE00010: "OW"}


# --------------------------------------------------------------------------------------------
# Pass 3: the header elements, read by pydicom


def _header_data_set(source: _Source, structure: _Structure) -> Dataset:
    """pydicom's reading of the elements before the first pixel data element."""
    ts = source.transfer_syntax
    source.stream.seek(source.start)
    return read_dataset(
        cast(BinaryIO, source.stream),
        bool(ts.is_implicit_VR),
        bool(ts.is_little_endian),
        bytelength=structure.header_end - source.start,
    )


@contextlib.contextmanager
def _problems_as_dicom(limits: ParseLimits) -> Iterator[None]:
    """Any failure while reading untrusted bytes becomes a :class:`DicomProblem`."""
    try:
        yield
    except DicomProblem:
        raise
    except RecursionError:
        raise TooDeep(f"sequences are nested more than {limits.max_sequence_depth} deep") from None
    except MemoryError:
        raise InvalidDicom("the data set cannot be read: out of memory") from None
    except Exception as exc:
        raise InvalidDicom(f"the data set cannot be read ({type(exc).__name__})") from None


def read_instance_header(
    path: Path, limits: ParseLimits = ParseLimits(), bulk_data_threshold: int = 1024
) -> ParsedInstance:
    """Validate the Part-10 file at ``path`` and extract what ingest needs (PS3.10, PS3.5).

    Never reads Pixel Data into memory. Raises a :class:`DicomProblem` subclass for any file
    that cannot be accepted and nothing else: :class:`InvalidDicom` (not Part 10, truncated,
    bad lengths, malformed UIDs, unknown transfer syntax), :class:`MissingAttributes` (no
    SOPClassUID, SOPInstanceUID, StudyInstanceUID or SeriesInstanceUID), :class:`TooLarge`
    (Deflated data set over ``limits.max_inflated_bytes``), :class:`TooDeep`.
    A non-zero preamble (CVE-2019-11687) is reported, not refused; the file is not modified.
    """
    with _problems_as_dicom(limits), _open_source(Path(path), limits) as source:
        structure = _Walker(source, limits).run()
        data_set = _header_data_set(source, structure)
        uids = _required_uids(data_set, source.file_meta)
        full = data_set_to_json(
            data_set, bulk_data_threshold=bulk_data_threshold, max_depth=limits.max_sequence_depth
        )
        for pixel in structure.pixel_elements:
            full[f"{pixel.tag:08X}"] = {
                "vr": pixel.vr,
                "BulkDataURI": bulk_data_uri(format_bulk_path([(pixel.tag, None)])),
            }
        full = {key: full[key] for key in sorted(full)}
        instance_json = filter_json(full, INSTANCE_LEVEL_TAGS)
        instance_json["00083002"] = {"vr": "UI", "Value": [str(source.transfer_syntax)]}
        return ParsedInstance(
            transfer_syntax_uid=str(source.transfer_syntax),
            sop_class_uid=uids["SOPClassUID"],
            sop_instance_uid=uids["SOPInstanceUID"],
            study_instance_uid=uids["StudyInstanceUID"],
            series_instance_uid=uids["SeriesInstanceUID"],
            values=_index_values(data_set),
            study_json=filter_json(full, STUDY_LEVEL_TAGS),
            series_json=filter_json(full, SERIES_LEVEL_TAGS),
            instance_json=dict(sorted(instance_json.items())),
            metadata_json=dumps(full),
            pixel_data=_pixel_data_info(source, structure, data_set),
            nonstandard_preamble=source.nonstandard_preamble,
        )


_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _required_uids(data_set: Dataset, file_meta: FileMetaDataset) -> dict[str, str]:
    """The four UIDs every stored instance needs (PS3.4 B.4.1, C.4.1; syntax PS3.5 9.1).

    MediaStorageSOPInstanceUID, when present, must name the same instance (PS3.10 7.1).
    """
    missing = [keyword for keyword in _REQUIRED_UIDS if not _has_value(data_set, keyword)]
    if missing:
        raise MissingAttributes(f"required attributes missing or empty: {', '.join(missing)}")
    uids = {keyword: _single_uid(data_set, keyword) for keyword in _REQUIRED_UIDS}
    media = file_meta.get("MediaStorageSOPInstanceUID")
    if media not in (None, "") and str(media) != uids["SOPInstanceUID"]:
        raise InvalidDicom(
            "MediaStorageSOPInstanceUID does not match SOPInstanceUID "
            f"({str(media)[:64]!r} != {uids['SOPInstanceUID']!r})"
        )
    return uids


def _has_value(data_set: Dataset, keyword: str) -> bool:
    return keyword in data_set and not data_set[keyword].is_empty


def _single_uid(data_set: Dataset, keyword: str) -> str:
    value = data_set[keyword].value
    if isinstance(value, MultiValue | list):
        raise InvalidDicom(f"{keyword} has more than one value")
    return require_uid(value, keyword)


def _index_values(data_set: Dataset) -> dict[str, str | int | None]:
    """Flat index values (see :class:`ParsedInstance`); bad values become ``None``."""
    values: dict[str, str | int | None] = {}
    for keyword in INDEX_KEYWORDS:
        values[keyword] = _index_value(data_set, keyword)
    return values


def _index_value(data_set: Dataset, keyword: str) -> str | int | None:
    if keyword not in data_set:
        return None
    try:
        return _flat_value(data_set[keyword], as_int=keyword in _INTEGER_KEYWORDS)
    except Exception:  # a value pydicom cannot convert is simply not indexed
        return None


def _flat_value(element: DataElement, *, as_int: bool) -> str | int | None:
    """A value as one index column holds it: the first value as ``int``, or the DICOM string."""
    if element.is_empty:
        return None
    value = element.value
    if as_int:
        first = value[0] if isinstance(value, MultiValue | list) else value
        try:
            return int(first)
        except (TypeError, ValueError):
            return None
    if isinstance(value, MultiValue | list):
        return "\\".join("" if item is None else str(item) for item in value)
    return str(value)


def _int_attribute(data_set: Dataset, keyword: str) -> int | None:
    try:
        if keyword not in data_set:
            return None
        return _as_int(_flat_value(data_set[keyword], as_int=True))
    except Exception:  # tolerant reading
        return None


def _as_int(value: str | int | None) -> int | None:
    return value if isinstance(value, int) else None


def _pixel_data_info(
    source: _Source, structure: _Structure, data_set: Dataset
) -> PixelDataInfo | None:
    """Where the top-level Pixel Data's frames are (see :mod:`dicomvault.dicom.pixels`)."""
    if source.deflated:
        return None
    pixel = next((p for p in structure.pixel_elements if p.tag == 0x7FE00010), None)
    if pixel is None:
        return None
    frames = max(_int_attribute(data_set, "NumberOfFrames") or 1, 1)
    if pixel.items is None:
        assert pixel.length is not None
        frame_length = native_frame_length(
            _int_attribute(data_set, "Rows"),
            _int_attribute(data_set, "Columns"),
            _int_attribute(data_set, "SamplesPerPixel"),
            _int_attribute(data_set, "BitsAllocated"),
            _text_attribute(data_set, "PhotometricInterpretation"),
        )
        if frame_length is not None and frame_length * frames > pixel.length:
            frame_length = None
        return PixelDataInfo(
            pixel.value_offset, pixel.length, False, frames, frame_length, None, pixel.vr
        )
    extended = data_set.get(0x7FE00001)
    table = extended.value if extended is not None and isinstance(extended.value, bytes) else None
    fragments = map_fragments_to_frames(source.stream, pixel.items, frames, table)
    return PixelDataInfo(pixel.value_offset, None, True, frames, None, fragments, pixel.vr)


def _text_attribute(data_set: Dataset, keyword: str) -> str | None:
    try:
        value = data_set.get(keyword)
    except Exception:  # tolerant reading
        return None
    return str(value).strip() if isinstance(value, str) else None


def read_bulk_value(file_path: Path, tag_path: str, limits: ParseLimits = ParseLimits()) -> bytes:
    """The value of the element a BulkDataURI path names (see :mod:`dicomvault.dicom.dicomjson`).

    Values are returned as stored (file byte order). A top-level pixel data element is read
    straight from the file; an encapsulated one is returned with its item structure (PS3.5
    A.4), up to but not including its Sequence Delimitation Item. Raises
    :class:`BulkDataNotFound` when the path names no binary value.
    """
    steps = resolve_bulk_path(tag_path)
    with _problems_as_dicom(limits), _open_source(Path(file_path), limits) as source:
        structure = _Walker(source, limits).run()
        if len(steps) == 1 and steps[0][0] in PIXEL_DATA_TAGS:
            for pixel in structure.pixel_elements:
                if pixel.tag == steps[0][0]:
                    return _read_pixel_value(source.stream, pixel)
            raise BulkDataNotFound("no such pixel data element")
        element = _navigate(_header_data_set(source, structure), steps)
        value = element.value
        if not isinstance(value, bytes):
            raise BulkDataNotFound("the element is not bulk data")
        return value


def _read_pixel_value(stream: IO[bytes], pixel: _PixelElement) -> bytes:
    if pixel.length is not None:
        stream.seek(pixel.value_offset)
        return stream.read(pixel.length)
    assert pixel.items is not None
    last_offset, last_length = pixel.items[-1] if pixel.items else (pixel.value_offset, 0)
    stream.seek(pixel.value_offset)
    return stream.read(last_offset + last_length - pixel.value_offset)


def _navigate(data_set: Dataset, steps: list[tuple[int, int | None]]) -> DataElement:
    """Follow (tag, item) steps down from the top-level data set."""
    current = data_set
    for tag, index in steps:
        if tag not in current:
            raise BulkDataNotFound(f"no element ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        element = current[tag]
        if index is None:
            return element
        if element.VR != "SQ" or index >= len(element.value):
            raise BulkDataNotFound(f"no item {index} in ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        current = element.value[index]
    raise BulkDataNotFound("empty bulk data path")
