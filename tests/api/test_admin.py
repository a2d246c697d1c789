"""Administration: the admin API (tenants, users, clients) and the ``dicomvault admin`` CLI.

The API is exercised over HTTP as the first admin; the CLI runs as a separate process against
the data folder of the same running server (one SQLite database, as an operator on the host would
do) and its effects are checked through the server: a user the CLI makes can log in, a user the
CLI locks loses its tokens, a client the CLI deletes can no longer get one. ``dicomvault import
--tenant`` loads files into a tenant (made if missing) and leaves one Import audit record.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.api.support import Api, bearer, dicomvault_cli, unique
from tests.integration.support_data import fresh_ct, new_uid
from tests.support.server import LiveServer


# -- the admin API ---------------------------------------------------------------------------------
def test_tenants_create_and_list(api: Api) -> None:
    name = unique("fac")
    created = api.admin("POST", "/api/v1/tenants", json={"name": name, "display_name": "North"})
    assert created.status_code == 201
    assert created.json() == {"name": name, "display_name": "North"}
    assert {"name": name, "display_name": "North"} in api.admin("GET", "/api/v1/tenants").json()
    assert api.admin("POST", "/api/v1/tenants", json={"name": name}).status_code == 409
    for bad in ("", "has space", "../etc", "x" * 65, "-leading"):
        assert api.admin("POST", "/api/v1/tenants", json={"name": bad}).status_code == 422, bad


def test_users_create_read_update_delete(api: Api) -> None:
    first, second = api.tenant("u1"), api.tenant("u2")
    username = unique("crud")
    body = {"username": username, "password": "long-enough-pw", "roles": ["technician"]}
    created = api.admin("POST", "/api/v1/users", json={**body, "tenants": [first]})
    assert created.status_code == 201
    assert created.json() == {
        "username": username,
        "roles": ["technician"],
        "tenants": [first],
        "default_tenant": first,
        "disabled": False,
    }
    assert "password" not in created.text and "hash" not in created.text
    assert api.admin("POST", "/api/v1/users", json={**body, "tenants": [first]}).status_code == 409
    listed = {u["username"] for u in api.admin("GET", "/api/v1/users").json()}
    assert username in listed
    patched = api.admin(
        "PATCH",
        f"/api/v1/users/{username}",
        json={
            "roles": ["radiologist", "technician"],
            "tenants": [first, second],
            "default_tenant": second,
        },
    )
    assert patched.status_code == 200
    assert patched.json()["roles"] == ["radiologist", "technician"]
    assert patched.json()["default_tenant"] == second
    assert api.admin("GET", f"/api/v1/users/{username}").json() == patched.json()
    tokens = api.login(username, "long-enough-pw")
    assert api.me(bearer(tokens["access_token"])).json()["default_tenant"] == second
    assert api.admin("DELETE", f"/api/v1/users/{username}").status_code == 204
    assert api.admin("GET", f"/api/v1/users/{username}").status_code == 404
    assert api.admin("DELETE", f"/api/v1/users/{username}").status_code == 404
    assert api.admin("PATCH", f"/api/v1/users/{username}", json={}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x", "password": "short", "roles": ["technician"]},
        {"username": "x y", "password": "long-enough-pw", "roles": ["technician"]},
        {"username": "x", "password": "long-enough-pw", "roles": ["superuser"]},
        {"username": "x", "password": "long-enough-pw", "roles": []},
    ],
)
def test_users_invalid_input(api: Api, body: dict[str, object]) -> None:
    assert api.admin("POST", "/api/v1/users", json=body).status_code == 422


def test_users_unknown_tenant_is_refused(api: Api) -> None:
    body = {
        "username": unique("t"),
        "password": "long-enough-pw",
        "roles": ["technician"],
        "tenants": ["no-such-tenant"],
    }
    assert api.admin("POST", "/api/v1/users", json=body).status_code == 400
    tenant = api.tenant("dt")
    bad_default = {**body, "tenants": [tenant], "default_tenant": "elsewhere"}
    assert api.admin("POST", "/api/v1/users", json=bad_default).status_code == 400


def test_clients_create_list_delete(api: Api) -> None:
    tenant = api.tenant("cl")
    body = {
        "name": "St. Elsewhere PACS",
        "tenants": [tenant],
        "scopes": ["dicom.search", "dicom.retrieve"],
        "allowed_ips": ["10.20.0.0/16"],
        "rate": 5,
        "burst": 20,
    }
    created = api.admin("POST", "/api/v1/clients", json=body)
    assert created.status_code == 201
    client = created.json()
    assert client["client_id"].startswith("dv-") and len(client["client_secret"]) >= 32
    assert client["roles"] == ["partner"] and client["default_tenant"] == tenant
    listed = api.admin("GET", "/api/v1/clients")
    assert client["client_secret"] not in listed.text
    (mine,) = [c for c in listed.json() if c["client_id"] == client["client_id"]]
    assert mine["allowed_ips"] == ["10.20.0.0/16"] and mine["scopes"] == body["scopes"]
    assert "client_secret" not in mine
    assert api.admin("DELETE", f"/api/v1/clients/{client['client_id']}").status_code == 204
    assert api.admin("DELETE", f"/api/v1/clients/{client['client_id']}").status_code == 404
    bad = api.admin("POST", "/api/v1/clients", json={**body, "allowed_ips": ["10.0.0.0/99"]})
    assert bad.status_code == 422


def test_the_admin_api_is_in_the_openapi_schema(api: Api) -> None:
    paths = api.http.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/tenants"]) >= {"get", "post"}
    assert set(paths["/api/v1/users"]) >= {"get", "post"}
    assert set(paths["/api/v1/users/{username}"]) >= {"get", "patch", "delete"}
    assert set(paths["/api/v1/clients"]) >= {"get", "post"}
    assert "delete" in paths["/api/v1/clients/{client_id}"]
    assert "post" in paths["/api/v1/auth/token"]
    assert set(paths["/api/v1/audit"]) == {"get"}


# -- the CLI, against the running server's database ------------------------------------------------
def _cli(live: LiveServer, *args: str, password: str | None = None) -> str:
    env = {"DICOMVAULT_NEW_USER_PASSWORD": password} if password else None
    done = dicomvault_cli("admin", *args, "--data-dir", str(live.data_dir), env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _eventually_refused(api: Api, token: str) -> None:
    """Another process changed the store: the server notices within its revalidation period."""
    deadline = time.monotonic() + 5
    while api.http.get("/dicom-web/studies", headers=bearer(token)).status_code == 200:
        assert time.monotonic() < deadline, "token still accepted 5 s after the change"
        time.sleep(0.2)


def test_admin_cli_manages_tenants_and_users(live: LiveServer, api: Api) -> None:
    tenant, username = unique("cli"), unique("cli-user")
    assert f"tenant {tenant} created" in _cli(live, "tenant-add", tenant, "--display-name", "CLI")
    assert {"name": tenant, "display_name": "CLI"} in api.admin("GET", "/api/v1/tenants").json()
    password = "cli-made-password"
    _cli(live, "user-add", username, "--role", "technician", "--tenant", tenant, password=password)
    token = api.login(username, password)["access_token"]
    assert api.me(bearer(token)).json()["tenants"] == [tenant]

    out = _cli(live, "user-set", username, "--role", "radiologist", "--disable")
    assert "roles radiologist" in out and "disabled" in out
    assert f"{username}\tradiologist\t{tenant}\tdisabled" in _cli(live, "users")
    # The running server sees the change: the token dies, the password no longer works.
    _eventually_refused(api, token)
    login = {"grant_type": "password", "username": username, "password": password}
    assert api.token_request(login).status_code == 400

    assert f"user {username} deleted" in _cli(live, "user-delete", username)
    assert api.admin("GET", f"/api/v1/users/{username}").status_code == 404
    missing = dicomvault_cli("admin", "user-delete", username, "--data-dir", str(live.data_dir))
    assert missing.returncode != 0 and "no such user" in missing.stderr
    # Every change above is in the audit trail, as the operating-system user.
    details = {
        r["detail"] for r in api.audit(event="110113") if r["principal_subject"].startswith("cli:")
    }
    for command in ("tenant-add", "user-add", "user-set", "user-delete"):
        assert f"dicomvault admin {command}" in details


def test_admin_cli_manages_clients(live: LiveServer, api: Api) -> None:
    tenant = api.tenant("cli-cl")
    out = _cli(live, "client-add", "Partner via CLI", "--tenant", tenant, "--scope", "dicom.search")
    client_id = re.search(r"client_id: (\S+)", out)
    secret = re.search(r"client_secret: (\S+)", out)
    assert client_id and secret
    listing = _cli(live, "clients")
    assert client_id.group(1) in listing and "scopes=dicom.search" in listing
    assert secret.group(1) not in listing
    token = api.token_request(
        {
            "grant_type": "client_credentials",
            "client_id": client_id.group(1),
            "client_secret": secret.group(1),
        }
    )
    assert token.status_code == 200
    access = token.json()["access_token"]
    assert f"client {client_id.group(1)} deleted" in _cli(live, "client-delete", client_id.group(1))
    listed = {c["client_id"] for c in api.admin("GET", "/api/v1/clients").json()}
    assert client_id.group(1) not in listed
    _eventually_refused(api, access)


def test_import_into_a_tenant_is_one_import_record(
    live: LiveServer, api: Api, tmp_path: Path
) -> None:
    tenant, patient = unique("imp"), unique("IMP-PID")
    studies = [new_uid(), new_uid()]
    folder = tmp_path / "export"
    folder.mkdir()
    for i, study in enumerate(studies):
        (folder / f"{i}.dcm").write_bytes(fresh_ct(study_uid=study, patient_id=patient))
    (folder / "notes.txt").write_text("not DICOM")
    done = dicomvault_cli(
        "import", str(folder), "--tenant", tenant, "--data-dir", str(live.data_dir)
    )
    assert done.returncode == 0, done.stderr
    assert "stored 2" in done.stdout
    (record,) = api.audit(event="110107", tenant=tenant)
    assert (record["event_type"], record["action"], record["outcome"]) == (None, "C", 0)
    assert sorted(record["study_uids"]) == sorted(studies)
    assert record["patient_id"] == patient
    assert record["principal_subject"].startswith("cli:")
    # The tenant was made, and the data is there, in that tenant only.
    assert tenant in {t["name"] for t in api.admin("GET", "/api/v1/tenants").json()}
    reader = api.user(["radiologist"], [tenant], prefix="imp-reader")
    found = api.http.get(
        "/dicom-web/studies", headers=reader.headers, params={"PatientID": patient}
    )
    assert len(found.json()) == 2
    elsewhere = api.http.get(
        "/dicom-web/studies", headers=api.admin_headers, params={"PatientID": patient}
    )
    assert elsewhere.json() == []
    bad = dicomvault_cli(
        "import", str(folder), "--tenant", "../x", "--data-dir", str(live.data_dir)
    )
    assert bad.returncode != 0
