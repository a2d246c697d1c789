"""Audit completeness over real HTTP: exactly one record per operation, failures included.

Every request here carries its own ``X-Request-ID`` and, through the trusted proxy 127.0.0.1, a
client address of its own; the records are then read back by that correlation ID through
``GET /api/v1/audit`` and checked field by field against PS3.15 A.5.3 (event ID, type code,
action, outcome), the principal, the tenant holding the data, its patient, the source address.
Finally the trail's own tools: the filters, the FHIR export, and ``dicomvault audit verify``
finding a record edited in the SQLite file.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomvault.asgi import create_app
from dicomvault.bootstrap import build_services, prepare
from dicomvault.config import Settings
from tests.api.support import Account, Api, bearer, dicomvault_cli, outlast_reuse_grace, unique
from tests.integration.support_data import fresh_ct, multipart_body, new_uid, stow_content_type
from tests.support.server import ADMIN_PASSWORD, LiveServer

_addresses = (f"203.0.113.{n}" for n in itertools.count(10))


@dataclass(frozen=True)
class Sent:
    response: httpx.Response
    correlation: str
    address: str


def send(
    api: Api, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> Sent:
    correlation, address = unique("audit"), next(_addresses)
    extra = {"X-Request-ID": correlation, "X-Forwarded-For": address}
    response = api.http.request(method, path, headers={**(headers or {}), **extra}, **kw)
    return Sent(response, correlation, address)


def the_record(api: Api, sent: Sent) -> dict[str, Any]:
    records = api.audit_of(sent.correlation)
    assert len(records) == 1, records
    record = records[0]
    assert record["correlation_id"] == sent.correlation
    assert record["source_ip"] == sent.address
    return record


def codes(record: dict[str, Any]) -> tuple[str, str | None, str, int]:
    return record["event_id"], record["event_type"], record["action"], record["outcome"]


@dataclass
class People:
    tenant: str
    technician: Account
    admin: Account
    auditor: Account
    patient: str
    study: str
    series: str
    sop: str


@pytest.fixture(scope="module")
def people(api: Api) -> People:
    tenant = api.tenant("audit")
    technician = api.user(["technician"], [tenant], prefix="aud-tech")
    patient = unique("AUD-PID")
    study, series, sop = new_uid(), new_uid(), new_uid()
    data = fresh_ct(study_uid=study, series_uid=series, sop_uid=sop, patient_id=patient)
    assert api.stow(technician.headers, [data]).status_code == 200
    return People(
        tenant=tenant,
        technician=technician,
        admin=api.user(["admin"], [tenant], prefix="aud-admin"),
        auditor=api.user(["auditor"], [], prefix="aud-auditor"),
        patient=patient,
        study=study,
        series=series,
        sop=sop,
    )


def _assert_principal(record: dict[str, Any], account: Account, role: str) -> None:
    assert record["principal_subject"] == account.subject
    assert record["principal_name"] == account.username
    assert record["role"] == role


# -- logins ----------------------------------------------------------------------------------------
def test_a_login_is_one_user_authentication_record(api: Api, people: People) -> None:
    account = people.technician
    sent = send(
        api,
        "POST",
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": account.username, "password": account.password},
    )
    assert sent.response.status_code == 200
    record = the_record(api, sent)
    assert codes(record) == ("110114", "110122", "E", 0)
    _assert_principal(record, account, "technician")
    assert record["tenant"] == people.tenant


def test_a_failed_login_is_recorded_as_a_failure(api: Api, people: People) -> None:
    sent = send(
        api,
        "POST",
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": people.technician.username, "password": "no"},
    )
    assert sent.response.status_code == 400
    record = the_record(api, sent)
    assert codes(record) == ("110114", "110122", "E", 4)
    assert record["principal_subject"] == people.technician.username


def test_a_logout_is_recorded(api: Api, people: People) -> None:
    tokens = api.login(people.technician.username)
    sent = send(
        api,
        "POST",
        "/api/v1/auth/logout",
        headers=bearer(tokens["access_token"]),
        data={"refresh_token": tokens["refresh_token"]},
    )
    assert sent.response.status_code == 204
    record = the_record(api, sent)
    assert codes(record) == ("110114", "110123", "E", 0)
    _assert_principal(record, people.technician, "technician")


def test_refresh_token_reuse_is_a_serious_security_alert(api: Api, people: People) -> None:
    tokens = api.login(people.technician.username)
    grant = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert api.token_request(grant).status_code == 200
    outlast_reuse_grace()
    sent = send(api, "POST", "/api/v1/auth/token", data=grant)
    assert sent.response.status_code == 400
    assert codes(the_record(api, sent)) == ("110113", "110143", "E", 8)


# -- DICOM operations ------------------------------------------------------------------------------
def test_a_query_is_one_query_record_with_the_patient_searched(api: Api, people: People) -> None:
    sent = send(
        api,
        "GET",
        "/dicom-web/studies",
        people.technician.headers,
        params={"PatientID": people.patient},
    )
    assert sent.response.status_code == 200 and len(sent.response.json()) == 1
    record = the_record(api, sent)
    assert codes(record) == ("110112", None, "E", 0)
    assert record["patient_id"] == people.patient
    _assert_principal(record, people.technician, "technician")


def assert_retrieve_of_the_study(api: Api, sent: Sent, people: People) -> dict[str, Any]:
    """A successful retrieve of the people's study: one Transfer record naming its patient and
    the tenant holding it. Returns the record for further checks."""
    assert sent.response.status_code == 200
    record = the_record(api, sent)
    assert codes(record) == ("110104", None, "R", 0)
    assert record["patient_id"] == people.patient
    assert record["tenant"] == people.tenant
    assert record["study_uids"] == [people.study]
    return record


def test_a_retrieve_names_the_patient_and_tenant_holding_the_data(api: Api, people: People) -> None:
    sent = send(api, "GET", f"/dicom-web/studies/{people.study}", people.technician.headers)
    assert_retrieve_of_the_study(api, sent, people)


def test_a_metadata_read_is_a_retrieve_with_its_series(api: Api, people: People) -> None:
    path = (
        f"/tenants/{people.tenant}/dicom-web/studies/{people.study}/series/{people.series}/metadata"
    )
    sent = send(api, "GET", path, people.technician.headers)
    assert sent.response.status_code == 200
    record = the_record(api, sent)
    assert codes(record) == ("110104", None, "R", 0)
    assert record["series_uids"] == [people.series]
    assert record["patient_id"] == people.patient


def test_a_store_is_one_transfer_record_with_created(api: Api, people: People) -> None:
    patient, study = unique("AUD-STORE"), new_uid()
    body, boundary = multipart_body([fresh_ct(study_uid=study, patient_id=patient)])
    headers = {**people.technician.headers, "Content-Type": stow_content_type(boundary)}
    sent = send(api, "POST", "/dicom-web/studies", headers, content=body)
    assert sent.response.status_code == 200
    record = the_record(api, sent)
    assert codes(record) == ("110104", None, "C", 0)
    assert record["patient_id"] == patient
    assert record["study_uids"] == [study]
    assert record["tenant"] == people.tenant


def test_a_store_of_two_patients_names_both(api: Api, people: People) -> None:
    first, second = unique("AUD-P1"), unique("AUD-P2")
    body, boundary = multipart_body([fresh_ct(patient_id=first), fresh_ct(patient_id=second)])
    headers = {**people.technician.headers, "Content-Type": stow_content_type(boundary)}
    sent = send(api, "POST", "/dicom-web/studies", headers, content=body)
    assert sent.response.status_code == 200
    record = the_record(api, sent)
    assert sorted(record["patient_id"].split("\\")) == sorted([first, second])
    for patient in (first, second):
        assert [r["correlation_id"] for r in api.audit(patient_id=patient)] == [sent.correlation]


def test_a_store_into_a_study_of_another_patient_names_both(api: Api, people: People) -> None:
    """The study keeps its first patient, whom every read names; the new instance says another:
    the store's record must be found under either."""
    kept, other, study = unique("AUD-KEPT"), unique("AUD-OTHER"), new_uid()
    assert (
        api.stow(
            people.technician.headers, [fresh_ct(study_uid=study, patient_id=kept)]
        ).status_code
        == 200
    )
    body, boundary = multipart_body([fresh_ct(study_uid=study, patient_id=other)])
    headers = {**people.technician.headers, "Content-Type": stow_content_type(boundary)}
    sent = send(api, "POST", f"/dicom-web/studies/{study}", headers, content=body)
    assert sent.response.status_code == 200
    assert sorted(the_record(api, sent)["patient_id"].split("\\")) == sorted([kept, other])
    read = send(api, "GET", f"/dicom-web/studies/{study}/metadata", people.technician.headers)
    assert read.response.status_code == 200
    assert the_record(api, read)["patient_id"] == kept


def test_a_store_that_stores_nothing_names_the_study_in_its_path(api: Api, people: People) -> None:
    patient, study = unique("AUD-NONE"), new_uid()
    assert (
        api.stow(
            people.technician.headers, [fresh_ct(study_uid=study, patient_id=patient)]
        ).status_code
        == 200
    )
    body, boundary = multipart_body([fresh_ct(study_uid=new_uid(), patient_id=unique("AUD-X"))])
    headers = {**people.technician.headers, "Content-Type": stow_content_type(boundary)}
    sent = send(api, "POST", f"/dicom-web/studies/{study}", headers, content=body)
    assert sent.response.status_code == 409  # the part belongs to another study
    record = the_record(api, sent)
    assert record["patient_id"] == patient
    assert record["outcome"] != 0


def test_a_delete_records_the_patient_it_removed(api: Api, people: People) -> None:
    patient, study, series = unique("AUD-DEL"), new_uid(), new_uid()
    data = [fresh_ct(study_uid=study, series_uid=series, patient_id=patient) for _ in range(2)]
    assert api.stow(people.technician.headers, data).status_code == 200
    sop = _first_sop(api, people, study)
    part = send(
        api,
        "DELETE",
        f"/dicom-web/studies/{study}/series/{series}/instances/{sop}",
        people.admin.headers,
    )
    assert part.response.status_code == 204
    record = the_record(api, part)
    assert codes(record) == ("110103", None, "D", 0)
    assert record["patient_id"] == patient
    whole = send(api, "DELETE", f"/dicom-web/studies/{study}", people.admin.headers)
    assert whole.response.status_code == 204
    record = the_record(api, whole)
    assert codes(record) == ("110105", None, "D", 0)
    assert record["patient_id"] == patient
    assert record["tenant"] == people.tenant
    _assert_principal(record, people.admin, "admin")


def _first_sop(api: Api, people: People, study: str) -> str:
    found = api.http.get(f"/dicom-web/studies/{study}/instances", headers=people.technician.headers)
    return str(found.json()[0]["00080018"]["Value"][0])


# -- failures --------------------------------------------------------------------------------------
def test_no_credentials_is_an_authentication_alert(api: Api, people: People) -> None:
    sent = send(api, "GET", f"/dicom-web/studies/{people.study}")
    assert sent.response.status_code == 401
    record = the_record(api, sent)
    assert codes(record) == ("110113", "110143", "E", 4)
    assert record["principal_subject"] == ""


def test_a_bad_token_is_a_serious_authentication_alert(api: Api, people: People) -> None:
    sent = send(api, "GET", "/dicom-web/studies", bearer("eyJhbGciOiJub25lIn0.e30."))
    assert sent.response.status_code == 401
    assert codes(the_record(api, sent)) == ("110113", "110143", "E", 8)


def test_a_denial_is_a_use_of_restricted_function_alert(api: Api, people: People) -> None:
    sent = send(api, "GET", "/dicom-web/studies", people.auditor.headers)
    assert sent.response.status_code == 403
    record = the_record(api, sent)
    assert codes(record) == ("110113", "110132", "E", 4)
    _assert_principal(record, people.auditor, "auditor")


def test_a_not_found_is_the_operation_failed(api: Api, people: People) -> None:
    unknown = new_uid()
    sent = send(api, "GET", f"/dicom-web/studies/{unknown}", people.technician.headers)
    assert sent.response.status_code == 404
    record = the_record(api, sent)
    assert codes(record) == ("110104", None, "R", 4)
    assert record["study_uids"] == [unknown]
    assert record["patient_id"] is None


# -- administration and the trail itself -----------------------------------------------------------
def test_an_admin_action_is_a_security_alert_of_its_kind(api: Api, people: People) -> None:
    sent = send(api, "POST", "/api/v1/tenants", people.admin.headers, json={"name": unique("adm")})
    assert sent.response.status_code == 201
    record = the_record(api, sent)
    assert codes(record) == ("110113", "110129", "U", 0)
    _assert_principal(record, people.admin, "admin")
    body = {"username": unique("u"), "password": "long-enough-pw", "roles": ["technician"]}
    user = send(api, "POST", "/api/v1/users", people.admin.headers, json=body)
    assert user.response.status_code == 201
    assert codes(the_record(api, user)) == ("110113", "110137", "U", 0)
    listed = send(api, "GET", "/api/v1/users", people.admin.headers)
    assert codes(the_record(api, listed)) == ("110113", "110132", "R", 0)


def test_reading_the_audit_trail_is_audited(api: Api, people: People) -> None:
    sent = send(api, "GET", "/api/v1/audit", people.auditor.headers, params={"limit": 1})
    assert sent.response.status_code == 200
    record = the_record(api, sent)
    assert codes(record) == ("110101", None, "R", 0)
    _assert_principal(record, people.auditor, "auditor")
    fhir = send(api, "GET", "/api/v1/audit/fhir", people.auditor.headers, params={"limit": 1})
    assert fhir.response.status_code == 200
    assert codes(the_record(api, fhir)) == ("110101", None, "R", 0)


# -- the search API and the FHIR export ----------------------------------------------------------
def test_filter_by_patient_returns_that_patients_records_only(api: Api, people: People) -> None:
    records = api.audit(patient_id=people.patient)
    assert records
    assert all(people.patient in r["patient_id"].split("\\") for r in records)
    assert {"110112", "110104"} <= {r["event_id"] for r in records}


def test_filter_by_user_and_by_event(api: Api, people: People) -> None:
    by_name = api.audit(principal=people.auditor.username)
    by_subject = api.audit(principal=people.auditor.subject)
    assert by_name and [r["id"] for r in by_name] == [r["id"] for r in by_subject]
    assert {r["principal_subject"] for r in by_name} == {people.auditor.subject}
    queries = api.audit(principal=people.technician.username, event="110112")
    assert queries and {r["event_id"] for r in queries} == {"110112"}


def test_filter_by_time(api: Api, people: People) -> None:
    sent = send(api, "GET", "/dicom-web/studies", people.technician.headers)
    (record,) = api.audit_of(sent.correlation)
    moment = datetime.fromisoformat(record["time"])
    since = api.audit(since=moment.isoformat(), principal=people.technician.username)
    until = api.audit(until=moment.isoformat(), principal=people.technician.username)
    assert record["id"] in {r["id"] for r in since}
    assert record["id"] not in {r["id"] for r in until}
    assert all(datetime.fromisoformat(r["time"]) >= moment for r in since)
    later = api.audit(
        since=(moment + timedelta(seconds=1)).isoformat(), correlation_id=sent.correlation
    )
    assert later == []
    assert api.admin("GET", "/api/v1/audit", params={"since": "yesterday"}).status_code == 422


def test_fhir_export_of_a_retrieve(api: Api, people: People) -> None:
    sent = send(
        api, "GET", f"/dicom-web/studies/{people.study}/metadata", people.technician.headers
    )
    assert sent.response.status_code == 200
    response = api.admin("GET", "/api/v1/audit/fhir", params={"correlation_id": sent.correlation})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    (entry,) = bundle["entry"]
    event = entry["resource"]
    assert event["resourceType"] == "AuditEvent"
    assert event["type"]["code"] == "110104" and event["action"] == "R" and event["outcome"] == "0"
    values = [e["what"]["identifier"]["value"] for e in event["entity"]]
    assert people.patient in values and f"urn:oid:{people.study}" in values
    assert event["agent"][0]["network"]["address"] == sent.address


# -- tampering -------------------------------------------------------------------------------------
def test_audit_verify_detects_a_record_edited_in_the_sqlite_file(
    live: LiveServer, api: Api, people: People, tmp_path: Path
) -> None:
    intact = dicomvault_cli("audit", "verify", "--data-dir", str(live.data_dir))
    assert intact.returncode == 0, intact.stderr
    assert "audit trail intact" in intact.stdout
    # Someone with the database file: a consistent copy of the live one, then an edit.
    copy = tmp_path / "copy"
    copy.mkdir()
    source = sqlite3.connect(live.data_dir / "index.sqlite3")
    target = sqlite3.connect(copy / "index.sqlite3")
    with source, target:
        source.backup(target)
    source.close()
    (victim,) = api.audit(patient_id=people.patient, event="110104", limit=1)
    with target:
        target.execute("DROP TRIGGER audit_events_no_update")
        target.execute(
            "UPDATE audit_events SET patient_id = 'SOMEONE-ELSE' WHERE id = ?", (victim["id"],)
        )
    target.close()
    tampered = dicomvault_cli("audit", "verify", "--data-dir", str(copy))
    assert tampered.returncode == 1
    assert f"TAMPERED at record {victim['id']}" in tampered.stderr
    assert "hash mismatch" in tampered.stderr
    # Verifying the live trail was itself recorded (Audit Log Used), as the OS user.
    verified = [r for r in api.audit(event="110101") if r["detail"] == "dicomvault audit verify"]
    assert verified and verified[0]["principal_subject"].startswith("cli:")


# -- what a retrieve's audit record costs ----------------------------------------------------------
def test_a_frames_retrieve_names_the_patient(api: Api, people: People) -> None:
    path = (
        f"/dicom-web/studies/{people.study}/series/{people.series}/instances/{people.sop}/frames/1"
    )
    accept = {"Accept": 'multipart/related; type="application/octet-stream"'}
    sent = send(api, "GET", path, {**people.technician.headers, **accept})
    record = assert_retrieve_of_the_study(api, sent, people)
    assert record["series_uids"] == [people.series]


@pytest.mark.anyio
async def test_retrieves_are_audited_from_their_own_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OHIF sends a request per frame, thumbnail and series' metadata: the audit record's tenant
    and patient come from the route's own index lookup, not a second query. Only a request
    whose route found nothing (here a 404) looks them up for the record."""
    settings = Settings(data_dir=tmp_path / "data", admin_password=ADMIN_PASSWORD)
    prepare(settings)
    services = build_services(settings)
    await services.auth.ensure_first_admin()
    owner_lookups: list[Any] = []
    lookup = services.repository.study_owners

    async def counted(*args: Any, **kwargs: Any) -> Any:
        owner_lookups.append(args)
        return await lookup(*args, **kwargs)

    monkeypatch.setattr(services.repository, "study_owners", counted)
    patient, study, series, sop = unique("AUD-ONE"), new_uid(), new_uid(), new_uid()
    instance = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    one_tenant = f"/tenants/{settings.default_tenant}/dicom-web/studies/{study}/series/{series}"
    octets = {"Accept": 'multipart/related; type="application/octet-stream"'}
    requests = {
        f"{instance}/frames/1": octets,
        f"{instance}/bulkdata/7FE00010": octets,
        f"{instance}/metadata": {},
        f"{one_tenant}/metadata": {},
        instance: {"Accept": "application/dicom"},
        f"/dicom-web/studies/{study}": {},
        f"/dicom-web/studies/{study}/thumbnail": {},
        f"{instance}/frames/1/rendered": {},
    }
    transport = httpx.ASGITransport(app=create_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://archive") as http:
            token = await http.post(
                "/api/v1/auth/token",
                data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
            )
            auth = bearer(token.json()["access_token"])
            data = fresh_ct(study_uid=study, series_uid=series, sop_uid=sop, patient_id=patient)
            body, boundary = multipart_body([data])
            stored = await http.post(
                "/dicom-web/studies",
                content=body,
                headers={**auth, "Content-Type": stow_content_type(boundary)},
            )
            assert stored.status_code == 200, stored.text
            owner_lookups.clear()
            correlations = {}
            for path, headers in requests.items():
                correlations[path] = correlation = unique("one-lookup")
                response = await http.get(
                    path, headers={**auth, **headers, "X-Request-ID": correlation}
                )
                assert response.status_code == 200, (path, response.text[:200])
            assert owner_lookups == []
            missing = await http.get(f"/dicom-web/studies/{new_uid()}", headers=auth)
            assert missing.status_code == 404
            assert len(owner_lookups) == 1
            for path, correlation in correlations.items():
                found = await http.get(
                    "/api/v1/audit", params={"correlation_id": correlation}, headers=auth
                )
                (record,) = found.json()
                assert record["event_id"] == "110104", path
                assert record["patient_id"] == patient, path
                assert record["tenant"] == settings.default_tenant, path
                assert record["study_uids"] == [study], path
    finally:
        await services.close()
