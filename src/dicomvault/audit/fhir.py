"""Audit records as FHIR R4 AuditEvent resources (https://hl7.org/fhir/R4/auditevent.html).

The mapping follows the DICOM audit message (PS3.15 A.5) as FHIR R4 describes it: ``type`` is
the EventID (CID 400), ``subtype`` the EventTypeCode (CID 401), ``action`` / ``outcome`` the
EventActionCode / EventOutcomeIndicator, the principal is the requesting ``agent``, and the
participant objects are ``entity`` elements: the patient (object role 1 "Patient") and each study
and series (identified as ``urn:dicom:uid`` / ``urn:oid:<UID>``, the convention of FHIR
ImagingStudy.identifier). The hash-chain fields and the correlation ID travel as extensions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dicomvault.audit.codes import (
    DCM_SYSTEM,
    EVENT_ID_MEANING,
    EVENT_TYPE_MEANING,
)
from dicomvault.audit.records import AuditRecord, split_uids

JSON = dict[str, Any]

DICOM_UID_SYSTEM = "urn:dicom:uid"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/security-source-type"
EXTENSION_BASE = "urn:dicomvault:fhir:audit"
OBSERVER_NAME = "dicomvault"
# DCM codes for the kind of identifier (PS3.16 CID 404 Audit Participant Object ID Type Code).
_STUDY_UID_TYPE = {"system": DCM_SYSTEM, "code": "110180", "display": "Study Instance UID"}
_SERIES_UID_TYPE = {"system": DCM_SYSTEM, "code": "112002", "display": "Series Instance UID"}
# FHIR audit-entity-type: 1 Person, 2 System Object.
_PERSON = {"system": ENTITY_TYPE_SYSTEM, "code": "1", "display": "Person"}
_SYSTEM_OBJECT = {"system": ENTITY_TYPE_SYSTEM, "code": "2", "display": "System Object"}
# FHIR object-role: 1 Patient, 3 Report (what PS3.15 A.5 uses for studies).
_PATIENT_ROLE = {"system": OBJECT_ROLE_SYSTEM, "code": "1", "display": "Patient"}
_REPORT_ROLE = {"system": OBJECT_ROLE_SYSTEM, "code": "3", "display": "Report"}
# FHIR network-type 2: IP address.
_NETWORK_IP_ADDRESS = "2"


def to_fhir(record: AuditRecord) -> JSON:
    """One record as a FHIR R4 AuditEvent resource (JSON object)."""
    resource: JSON = {
        "resourceType": "AuditEvent",
        "id": str(record.id),
        "extension": _extensions(record),
        "type": _dcm(record.event_id, EVENT_ID_MEANING),
        "action": record.action,
        "recorded": _instant(record),
        "outcome": str(record.outcome),
        "agent": [_agent(record)],
        "source": _source(record),
    }
    if record.event_type is not None:
        resource["subtype"] = [_dcm(record.event_type, EVENT_TYPE_MEANING)]
    if record.detail:
        resource["outcomeDesc"] = record.detail
    entities = _entities(record)
    if entities:
        resource["entity"] = entities
    return resource


def to_fhir_bundle(records: Iterable[AuditRecord], bundle_type: str = "collection") -> JSON:
    """Records as a FHIR R4 Bundle of AuditEvents ("collection" for exports, or "searchset")."""
    entries = [
        {"fullUrl": f"urn:dicomvault:audit:{record.id}", "resource": to_fhir(record)}
        for record in records
    ]
    bundle: JSON = {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
    if bundle_type == "searchset":
        bundle["total"] = len(entries)
    return bundle


def _dcm(code: str, meanings: dict[str, str]) -> JSON:
    coding: JSON = {"system": DCM_SYSTEM, "code": code}
    if code in meanings:
        coding["display"] = meanings[code]
    return coding


def _instant(record: AuditRecord) -> str:
    """FHIR ``instant``: UTC with a zone designator, microsecond precision."""
    return record.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _agent(record: AuditRecord) -> JSON:
    agent: JSON = {
        "who": {
            "identifier": {"value": record.principal_subject or "anonymous"},
            "display": record.principal_name or record.principal_subject or "anonymous",
        },
        "requestor": True,
    }
    if record.role:
        agent["role"] = [{"text": record.role}]
    if record.principal_name:
        agent["name"] = record.principal_name
    if record.source_ip:
        agent["network"] = {"address": record.source_ip, "type": _NETWORK_IP_ADDRESS}
    return agent


def _source(record: AuditRecord) -> JSON:
    source: JSON = {
        "observer": {"display": OBSERVER_NAME},
        "type": [{"system": SOURCE_TYPE_SYSTEM, "code": "4", "display": "Application Server"}],
    }
    if record.tenant:
        source["site"] = record.tenant
    return source


def _entities(record: AuditRecord) -> list[JSON]:
    entities: list[JSON] = []
    # A record about several patients holds their IDs backslash-joined: one entity each.
    for patient_id in split_uids(record.patient_id or ""):
        entities.append(
            {
                "what": {"identifier": {"value": patient_id}},
                "type": _PERSON,
                "role": _PATIENT_ROLE,
            }
        )
    entities.extend(_uid_entity(uid, _STUDY_UID_TYPE) for uid in record.study_uids)
    entities.extend(_uid_entity(uid, _SERIES_UID_TYPE) for uid in record.series_uids)
    return entities


def _uid_entity(uid: str, identifier_type: JSON) -> JSON:
    return {
        "what": {
            "identifier": {
                "type": {"coding": [identifier_type]},
                "system": DICOM_UID_SYSTEM,
                "value": f"urn:oid:{uid}",
            }
        },
        "type": _SYSTEM_OBJECT,
        "role": _REPORT_ROLE,
    }


def _extensions(record: AuditRecord) -> list[JSON]:
    extensions: list[JSON] = [
        {"url": f"{EXTENSION_BASE}:prev-hash", "valueString": record.prev_hash},
        {"url": f"{EXTENSION_BASE}:hash", "valueString": record.hash},
    ]
    if record.correlation_id:
        extensions.append(
            {"url": f"{EXTENSION_BASE}:correlation-id", "valueString": record.correlation_id}
        )
    return extensions
