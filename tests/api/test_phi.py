"""A PHI canary: stored, searched, retrieved and misused over HTTP — never in the server's log.

The instance's PatientName, PatientID and PatientBirthDate are canary strings found nowhere else.
It goes through every path that handles patient data (STOW, QIDO by name, ID and birth date,
fuzzy matching, WADO instance and metadata) and through error paths that tempt a server to echo
its input (malformed queries, a patient name where a UID belongs, invalid instances, duplicate
and mismatched stores, bad admin input, an unknown user logging in, unauthenticated searches).
Then the server's whole log output — its access log, uvicorn, anything printed — is searched
for the canaries. The audit trail is the one place a patient ID may appear, and does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dicomvault.index.engine import open_database
from tests.api.support import Account, Api, bearer, unique
from tests.integration.support_data import (
    encode,
    fresh_ct,
    new_uid,
    read_dataset,
)
from tests.support.server import LiveServer

CANARY_NAME = "ZZCANARY^PHI"
CANARY_ID = "ZZCANARY-ID-7731"
CANARY_BIRTH_DATE = "19010827"
CANARIES = ("ZZCANARY", CANARY_ID, CANARY_BIRTH_DATE, "CANARY^PHI", "CANARY%5EPHI")
DICOM_JSON = {"Accept": "application/dicom+json"}


@pytest.fixture(scope="module")
def technician(api: Api) -> Account:
    return api.user(["technician"], ["default"], prefix="phi-tech")


@pytest.fixture(scope="module")
def canary(api: Api, technician: Account) -> Iterator[dict[str, str]]:
    study, series, sop = new_uid(), new_uid(), new_uid()
    data = fresh_ct(
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        patient_id=CANARY_ID,
        patient_name=CANARY_NAME,
        PatientBirthDate=CANARY_BIRTH_DATE,
    )
    assert read_dataset(data).PatientBirthDate == CANARY_BIRTH_DATE
    stored = api.stow(technician.headers, [data])
    assert stored.status_code == 200, stored.text
    yield {"study": study, "series": series, "sop": sop, "data": data.hex()}


def _echoes_values(text: str) -> bool:
    return any(value in text for value in (CANARY_NAME, CANARY_ID, CANARY_BIRTH_DATE))


def test_the_canary_is_found_by_name_id_birth_date_and_fuzzy_name(
    api: Api, technician: Account, canary: dict[str, str]
) -> None:
    for params in (
        {"PatientName": CANARY_NAME},
        {"PatientID": CANARY_ID},
        {"PatientBirthDate": CANARY_BIRTH_DATE},
        {"PatientName": "zzcanary*", "fuzzymatching": "true"},
        {"PatientID": "ZZCANARY*", "includefield": "all"},
    ):
        response = api.http.get(
            "/dicom-web/studies", params=params, headers={**technician.headers, **DICOM_JSON}
        )
        assert response.status_code == 200, params
        assert [r["0020000D"]["Value"][0] for r in response.json()] == [canary["study"]], params
    series = api.http.get(
        "/dicom-web/series", params={"PatientName": CANARY_NAME}, headers=technician.headers
    )
    assert series.status_code == 200 and len(series.json()) == 1


def test_the_canary_is_retrieved(api: Api, technician: Account, canary: dict[str, str]) -> None:
    base = f"/dicom-web/studies/{canary['study']}"
    instance = f"{base}/series/{canary['series']}/instances/{canary['sop']}"
    whole = api.http.get(instance, headers={**technician.headers, "Accept": "application/dicom"})
    assert whole.status_code == 200
    assert whole.content == bytes.fromhex(canary["data"])
    metadata = api.http.get(base + "/metadata", headers={**technician.headers, **DICOM_JSON})
    assert metadata.status_code == 200
    assert metadata.json()[0]["00100010"]["Value"] == [{"Alphabetic": CANARY_NAME}]
    assert api.http.get(base, headers=technician.headers).status_code == 200


def test_error_paths_with_the_canary(api: Api, technician: Account, canary: dict[str, str]) -> None:
    h = technician.headers
    bad_queries = [
        {"PatientName": CANARY_NAME, "limit": "many"},
        {"PatientBirthDate": f"{CANARY_BIRTH_DATE}-ZZCANARY"},
        {"PatientID": CANARY_ID, "includefield": "ZZCANARY"},
        {"ZZCANARY": CANARY_ID},
        {"PatientName": CANARY_NAME, "fuzzymatching": "ZZCANARY"},
    ]
    for params in bad_queries:
        response = api.http.get("/dicom-web/studies", params=params, headers=h)
        assert 400 <= response.status_code < 500, params
        # An unknown attribute may be named back; the patient data never is.
        assert not _echoes_values(response.text), (params, response.text)
    # A patient name where a UID belongs, in each position.
    for path in (
        f"/dicom-web/studies/{CANARY_NAME}",
        f"/dicom-web/studies/{canary['study']}/series/{CANARY_ID}/metadata",
        f"/dicom-web/studies/{canary['study']}/series/{canary['series']}/instances/{CANARY_ID}",
        f"/tenants/{CANARY_ID}/dicom-web/studies",
        f"/nowhere/{CANARY_NAME}",
    ):
        response = api.http.get(path, headers=h)
        assert 400 <= response.status_code < 500, path
        assert "ZZCANARY" not in response.text
    # Unauthenticated and wrongly authenticated searches for the canary.
    anonymous = api.http.get("/dicom-web/studies", params={"PatientName": CANARY_NAME})
    assert anonymous.status_code == 401
    forged = api.http.get(
        "/dicom-web/studies", params={"PatientID": CANARY_ID}, headers=bearer(CANARY_ID)
    )
    assert forged.status_code == 401
    # A correlation ID carrying the canary is not taken over (nor logged).
    echoed = api.http.get("/dicom-web/studies", headers={**h, "X-Request-ID": CANARY_NAME})
    assert "ZZCANARY" not in echoed.headers["x-request-id"]


def test_store_failures_with_the_canary(
    api: Api, technician: Account, canary: dict[str, str]
) -> None:
    h = technician.headers
    data = bytes.fromhex(canary["data"])
    # Same SOP Instance UID, different bytes: refused under the default policy.
    changed = read_dataset(data)
    changed.PatientName = CANARY_NAME + "^AGAIN"
    assert api.stow(h, [encode(changed)]).status_code == 409
    # Into another study's URL.
    assert api.stow(h, [data], study=new_uid()).status_code == 409
    # Missing SOP Instance UID (but full of canary).
    broken = read_dataset(fresh_ct(patient_id=CANARY_ID, patient_name=CANARY_NAME))
    del broken.SOPInstanceUID
    response = api.stow(h, [encode(broken)])
    assert response.status_code in (400, 409)
    assert "ZZCANARY" not in response.text
    # Garbage carrying the canary, in a DICOM part and as the wrong media type.
    garbage = b"\0" * 128 + b"DICM" + CANARY_NAME.encode() * 10
    assert 400 <= api.stow(h, [garbage]).status_code < 500
    wrong = api.http.post(
        "/dicom-web/studies",
        content=CANARY_NAME.encode(),
        headers={**h, "Content-Type": f"text/plain; name={CANARY_ID}"},
    )
    assert wrong.status_code == 415


def test_admin_and_login_errors_with_the_canary(api: Api) -> None:
    invalid_user = api.admin(
        "POST",
        "/api/v1/users",
        json={"username": CANARY_NAME, "password": CANARY_ID, "roles": ["ZZCANARY"]},
    )
    assert invalid_user.status_code == 422
    assert "ZZCANARY" not in invalid_user.text
    login = api.token_request(
        {"grant_type": "password", "username": CANARY_NAME, "password": CANARY_ID}
    )
    assert login.status_code == 400 and "ZZCANARY" not in login.text
    grant = api.token_request({"grant_type": CANARY_NAME})
    assert grant.status_code == 400 and "ZZCANARY" not in grant.text
    assert api.admin("GET", f"/api/v1/users/{CANARY_ID}").status_code == 404
    search = api.admin(
        "GET", "/api/v1/audit", params={"patient_id": CANARY_ID, "since": "ZZCANARY"}
    )
    assert search.status_code == 422 and "ZZCANARY" not in search.text


def test_the_audit_trail_is_where_the_patient_id_is(api: Api, canary: dict[str, str]) -> None:
    records = api.audit(patient_id=CANARY_ID)
    assert {"110104", "110112"} <= {r["event_id"] for r in records}
    assert all("ZZCANARY^PHI" not in r["detail"] for r in api.audit(limit=1000))


def test_no_canary_in_the_server_log(live: LiveServer, canary: dict[str, str]) -> None:
    log = live.log()
    assert "dicomvault.access" in log  # the access log is on: the check has something to read
    found = {c: log.count(c) for c in CANARIES if c in log}
    assert not found, f"PHI canaries in the server log: {found}"
    assert unique("x") not in log


def test_database_errors_never_carry_sql_parameters(tmp_path: Path) -> None:
    """SQL parameters hold patient data: engines are made with hide_parameters (index/engine.py),
    so an error that reaches a log names the statement, never the values bound to it."""
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'phi.sqlite3'}")
    engines = [database.read_engine.sync_engine, database.write_engine.sync_engine]
    assert database.sync_write_engine is not None
    engines.append(database.sync_write_engine)
    assert all(engine.hide_parameters for engine in engines)
    with (
        database.sync_write_engine.connect() as connection,
        pytest.raises(DBAPIError) as failure,
    ):
        query = text("SELECT * FROM no_such_table WHERE x = :name")
        connection.execute(query, {"name": CANARY_NAME})
    assert CANARY_NAME not in str(failure.value)
    assert "hidden due to hide_parameters" in str(failure.value)
    database.sync_write_engine.dispose()
