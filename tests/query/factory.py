"""Rows for search tests, inserted straight through the models (no parser, no blobs).

Attributes are given by keyword; each becomes both the indexed column and an element of the
level's ``attributes_json``, as ingest stores them. Counts and ModalitiesInStudy are kept up to
date as series and instances are added. All values are synthetic.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from dicomvault.dicom.attributes import resolve_attribute
from dicomvault.index.models import Instance, Series, Study

_STUDY_COLUMNS = {
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "AccessionNumber": "accession_number",
    "StudyID": "study_id",
    "StudyDescription": "study_description",
    "ReferringPhysicianName": "referring_physician_name",
}
_SERIES_COLUMNS = {
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
    "SeriesDate": "series_date",
    "SeriesTime": "series_time",
    "BodyPartExamined": "body_part_examined",
    "PerformedProcedureStepStartDate": "performed_procedure_step_start_date",
}
_INSTANCE_COLUMNS = {
    "InstanceNumber": "instance_number",
    "Rows": "rows",
    "Columns": "columns",
    "NumberOfFrames": "number_of_frames",
}


def new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def dicom_json(attributes: dict[str, Any]) -> dict[str, Any]:
    """DICOM JSON (PS3.18 F.2) of keyword -> value; ``None`` gives an element without Value."""
    out: dict[str, Any] = {}
    for keyword, value in attributes.items():
        attribute = resolve_attribute(keyword)
        element: dict[str, Any] = {"vr": attribute.vr}
        if value is not None:
            if attribute.vr == "PN":
                element["Value"] = [{"Alphabetic": value}]
            elif attribute.vr in ("IS", "US", "UL"):
                element["Value"] = [int(value)]
            else:
                element["Value"] = [value]
        out[attribute.tag] = element
    return out


def _columns(mapping: dict[str, str], attributes: dict[str, Any]) -> dict[str, Any]:
    return {mapping[k]: v for k, v in attributes.items() if k in mapping}


async def add_study(
    session: AsyncSession, tenant: str = "t1", study_uid: str | None = None, **attributes: Any
) -> Study:
    study_uid = study_uid or new_uid()
    document = dicom_json({"StudyInstanceUID": study_uid, **attributes})
    name = attributes.get("PatientName")
    study = Study(
        tenant=tenant,
        study_uid=study_uid,
        patient_name_fuzzy=name.upper() if name else None,
        modalities_in_study="",
        num_series=0,
        num_instances=0,
        attributes_json=orjson.dumps(document),
        **_columns(_STUDY_COLUMNS, attributes),
    )
    session.add(study)
    await session.flush()
    return study


async def add_series(
    session: AsyncSession, study: Study, series_uid: str | None = None, **attributes: Any
) -> Series:
    series_uid = series_uid or new_uid()
    document = dicom_json({"SeriesInstanceUID": series_uid, **attributes})
    series = Series(
        study_pk=study.pk,
        tenant=study.tenant,
        series_uid=series_uid,
        num_instances=0,
        attributes_json=orjson.dumps(document),
        **_columns(_SERIES_COLUMNS, attributes),
    )
    session.add(series)
    study.num_series += 1
    modality = attributes.get("Modality")
    if modality:
        present = set(filter(None, study.modalities_in_study.split("\\")))
        study.modalities_in_study = "\\".join(sorted(present | {modality}))
    await session.flush()
    return series


async def add_instance(
    session: AsyncSession,
    study: Study,
    series: Series,
    sop_uid: str | None = None,
    sop_class_uid: str = "1.2.840.10008.5.1.4.1.1.2",
    **attributes: Any,
) -> Instance:
    sop_uid = sop_uid or new_uid()
    document = dicom_json({"SOPClassUID": sop_class_uid, "SOPInstanceUID": sop_uid, **attributes})
    instance = Instance(
        series_pk=series.pk,
        study_pk=study.pk,
        tenant=study.tenant,
        sop_uid=sop_uid,
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        size=1000,
        sha256="0" * 64,
        blob_key=f"{study.tenant}/{sop_uid}.dcm",
        attributes_json=orjson.dumps(document),
        metadata_json=b"{}",
        **_columns(_INSTANCE_COLUMNS, attributes),
    )
    session.add(instance)
    series.num_instances += 1
    study.num_instances += 1
    await session.flush()
    return instance
