"""FHIR R4 AuditEvent export, checked against the resource's shape in the R4 specification."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from dicomvault.audit import codes
from dicomvault.audit.fhir import to_fhir, to_fhir_bundle
from dicomvault.audit.records import GENESIS_HASH, AuditEvent, AuditRecord
from dicomvault.audit.trail import AuditTrail

DCM = "http://dicom.nema.org/resources/ontology/DCM"
# FHIR R4 instant: year to seconds, optional fraction, mandatory zone.
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
WHEN = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def record(kind: codes.EventKind = codes.RETRIEVE, **fields: object) -> AuditRecord:
    defaults: dict[str, object] = {
        "principal_subject": "user:12",
        "principal_name": "tech1",
        "role": "technician",
        "tenant": "north",
        "patient_id": "PID-42",
        "study_uids": ("1.2.826.0.1.3680043.8.498.1",),
        "series_uids": ("1.2.826.0.1.3680043.8.498.2",),
        "source_ip": "198.51.100.7",
        "correlation_id": "c0ffee",
        "detail": "WADO-RS study",
        "time": WHEN,
    }
    event = AuditEvent.of(kind, **(defaults | fields))
    return AuditRecord.seal(event, id=9, time=WHEN, prev_hash=GENESIS_HASH)


def assert_r4_audit_event_shape(resource: dict[str, Any]) -> None:
    """The R4 cardinalities: type 1..1, recorded 1..1, agent 1..* (requestor 1..1), source 1..1
    (observer 1..1); action / outcome from their required value sets; sev-1 on entities."""
    assert resource["resourceType"] == "AuditEvent"
    assert set(resource["type"]) <= {"system", "code", "display"}
    assert resource["type"]["system"] == DCM
    assert resource["type"]["code"] in codes.EVENT_ID_MEANING
    for subtype in resource.get("subtype", []):
        assert subtype["system"] == DCM and subtype["code"] in codes.EVENT_TYPE_MEANING
    assert resource["action"] in {"C", "R", "U", "D", "E"}
    assert INSTANT.match(resource["recorded"])
    assert resource["outcome"] in {"0", "4", "8", "12"}
    assert resource["agent"], "agent is 1..*"
    for agent in resource["agent"]:
        assert isinstance(agent["requestor"], bool)
        if "network" in agent:
            assert agent["network"]["type"] in {"1", "2", "3", "4", "5"}
    assert resource["source"]["observer"]
    for entity in resource.get("entity", []):
        assert not ("name" in entity and "query" in entity)  # sev-1
        assert entity["what"]["identifier"]["value"]
    json.dumps(resource)  # plain JSON types only


def test_retrieve_record_maps_to_an_audit_event() -> None:
    resource = to_fhir(record())
    assert_r4_audit_event_shape(resource)
    assert resource["id"] == "9"
    assert resource["type"] == {
        "system": DCM,
        "code": "110104",
        "display": "DICOM Instances Transferred",
    }
    assert "subtype" not in resource
    assert resource["action"] == "R"
    assert resource["outcome"] == "0"
    assert resource["recorded"] == "2026-05-06T07:08:09.123456Z"
    assert resource["outcomeDesc"] == "WADO-RS study"
    (agent,) = resource["agent"]
    assert agent["requestor"] is True
    assert agent["who"]["identifier"]["value"] == "user:12"
    assert agent["who"]["display"] == "tech1"
    assert agent["role"] == [{"text": "technician"}]
    assert agent["network"] == {"address": "198.51.100.7", "type": "2"}
    assert resource["source"]["site"] == "north"
    patient, study, series = resource["entity"]
    assert patient["what"]["identifier"] == {"value": "PID-42"}
    assert patient["role"]["code"] == "1" and patient["type"]["code"] == "1"
    assert study["what"]["identifier"]["system"] == "urn:dicom:uid"
    assert study["what"]["identifier"]["value"] == "urn:oid:1.2.826.0.1.3680043.8.498.1"
    assert study["what"]["identifier"]["type"]["coding"][0]["code"] == "110180"
    assert study["type"]["code"] == "2"
    assert series["what"]["identifier"]["value"] == "urn:oid:1.2.826.0.1.3680043.8.498.2"
    extensions = {e["url"].rsplit(":", 1)[1]: e["valueString"] for e in resource["extension"]}
    assert extensions == {
        "prev-hash": GENESIS_HASH,
        "hash": record().hash,
        "correlation-id": "c0ffee",
    }


@pytest.mark.parametrize(
    ("kind", "outcome", "event_id", "subtype"),
    [
        (codes.LOGIN, codes.EventOutcome.MINOR_FAILURE, "110114", "110122"),
        (codes.LOGOUT, codes.EventOutcome.SUCCESS, "110114", "110123"),
        (codes.AUTHORIZATION_DENIED, codes.EventOutcome.MINOR_FAILURE, "110113", "110132"),
        (codes.AUTHENTICATION_ALERT, codes.EventOutcome.SERIOUS_FAILURE, "110113", "110143"),
        (codes.APPLICATION_START, codes.EventOutcome.SUCCESS, "110100", "110120"),
    ],
)
def test_subtyped_events(kind: codes.EventKind, outcome: int, event_id: str, subtype: str) -> None:
    resource = to_fhir(
        record(kind, outcome=outcome, patient_id=None, study_uids=(), series_uids=(), detail="")
    )
    assert_r4_audit_event_shape(resource)
    assert resource["type"]["code"] == event_id
    assert resource["subtype"] == [
        {"system": DCM, "code": subtype, "display": codes.EVENT_TYPE_MEANING[subtype]}
    ]
    assert resource["outcome"] == str(int(outcome))
    assert "entity" not in resource and "outcomeDesc" not in resource


def test_anonymous_caller_still_has_an_agent() -> None:
    resource = to_fhir(
        record(codes.LOGIN, principal_subject="", principal_name="", role="", source_ip=None)
    )
    assert_r4_audit_event_shape(resource)
    (agent,) = resource["agent"]
    assert agent["who"]["identifier"]["value"] == "anonymous"
    assert "network" not in agent and "role" not in agent


@pytest.mark.anyio
async def test_bundle_of_stored_records(trail: AuditTrail) -> None:
    for n in range(3):
        await trail.append(AuditEvent.of(codes.QUERY, principal_subject="user:1", detail=f"q{n}"))
    records = await trail.query()
    bundle = to_fhir_bundle(records, bundle_type="searchset")
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 3
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["3", "2", "1"]
    for entry in bundle["entry"]:
        assert entry["fullUrl"]
        assert_r4_audit_event_shape(entry["resource"])
    assert to_fhir_bundle([])["entry"] == [] and "total" not in to_fhir_bundle([])
