"""Tenant isolation on every DICOMweb route, over real HTTP (DESIGN.md, security model).

Two tenants, "north" and "south", each with data of its own and — the hard case — a study whose
Study, Series and SOP Instance UIDs are the same in both (different patients, different bytes).
A user of one tenant must never see, retrieve, delete or write the other's data: QIDO with
universal matching, wildcards, fuzzy matching, includefield=all and paging returns only its own
tenant's; every WADO route (and every other GET route under a study, found in the permission
table) answers an out-of-tenant UID exactly as an unknown UID; DELETE cannot reach it; STOW into
a tenant the user lacks is refused. ``/tenants/{t}/dicom-web`` serves exactly that tenant, and
the URLs it answers with keep that prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from dicomvault.api.permissions import ROUTE_POLICIES
from dicomvault.auth.principal import Action
from tests.api.support import Account, Api
from tests.integration.support_data import (
    PATIENT_ID,
    PIXEL_DATA,
    RETRIEVE_URL,
    STUDY_UID,
    fresh_ct,
    new_uid,
    parse_multipart,
    values,
)

DICOM_JSON = {"Accept": "application/dicom+json"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)(?::[a-z]+)?\}")


@dataclass(frozen=True)
class Study:
    """One stored single-instance study as a tenant holds it."""

    study: str
    series: str
    sop: str
    patient_id: str
    data: bytes


def _study(patient_id: str, uids: tuple[str, str, str] | None = None) -> Study:
    study, series, sop = uids or (new_uid(), new_uid(), new_uid())
    data = fresh_ct(
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        patient_id=patient_id,
        patient_name=f"SYNTH^{patient_id}",
    )
    return Study(study, series, sop, patient_id, data)


@dataclass
class World:
    north: str
    south: str
    north_tech: Account
    south_tech: Account
    both_radiologist: Account  # holds both, default north
    north_admin: Account
    both_admin: Account  # holds both, default north
    north_only: Study
    south_only: Study
    same_north: Study  # the same UIDs ...
    same_south: Study  # ... in the other tenant
    delete_north: Study
    delete_south: Study
    unknown: Study  # valid UIDs that exist nowhere

    @property
    def north_studies(self) -> set[str]:
        return {self.north_only.study, self.same_north.study, self.delete_north.study}

    @property
    def north_patients(self) -> set[str]:
        return {
            self.north_only.patient_id,
            self.same_north.patient_id,
            self.delete_north.patient_id,
        }

    @property
    def south_patients(self) -> set[str]:
        return {
            self.south_only.patient_id,
            self.same_south.patient_id,
            self.delete_south.patient_id,
        }


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    north, south = api.tenant("north"), api.tenant("south")
    shared = (new_uid(), new_uid(), new_uid())
    doomed = (new_uid(), new_uid(), new_uid())
    w = World(
        north=north,
        south=south,
        north_tech=api.user(["technician"], [north], prefix="north-tech"),
        south_tech=api.user(["technician"], [south], prefix="south-tech"),
        both_radiologist=api.user(["radiologist"], [north, south], default_tenant=north),
        north_admin=api.user(["admin"], [north], prefix="north-admin"),
        both_admin=api.user(["admin"], [north, south], default_tenant=north),
        north_only=_study("N-ONLY"),
        south_only=_study("S-ONLY"),
        same_north=_study("N-SAME", shared),
        same_south=_study("S-SAME", shared),
        delete_north=_study("N-DEL", doomed),
        delete_south=_study("S-DEL", doomed),
        unknown=_study("NOBODY"),
    )
    for account, studies in (
        (w.north_tech, [w.north_only, w.same_north, w.delete_north]),
        (w.south_tech, [w.south_only, w.same_south, w.delete_south]),
    ):
        response = api.stow(account.headers, [s.data for s in studies])
        assert response.status_code == 200, response.text
    return w


def _qido(api: Api, account: Account, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.http.get(path, params=params, headers={**account.headers, **DICOM_JSON})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()
    return results


def _first(result: dict[str, Any], tag: str) -> Any:
    found = values(result, tag)
    return found[0] if found else None


# -- QIDO ------------------------------------------------------------------------------------------
# (path, params, whom the query targets): "any" matches both tenants' data, "south" only the
# other tenant's; either way the north user gets north data only.
QIDO_CASES = [
    ("/dicom-web/studies", {}, "any"),
    ("/dicom-web/studies", {"PatientName": "*"}, "any"),
    ("/dicom-web/studies", {"PatientID": "*"}, "any"),
    ("/dicom-web/studies", {"PatientID": "?-SAME"}, "any"),
    ("/dicom-web/studies", {"PatientID": "S-*"}, "south"),
    ("/dicom-web/studies", {"PatientName": "synth^s*", "fuzzymatching": "true"}, "south"),
    ("/dicom-web/studies", {"PatientName": "SYNTH^S-SAME", "fuzzymatching": "true"}, "south"),
    ("/dicom-web/studies", {"includefield": "all"}, "any"),
    ("/dicom-web/studies", {"ModalitiesInStudy": "CT", "includefield": "all"}, "any"),
    ("/dicom-web/series", {"includefield": "all"}, "any"),
    ("/dicom-web/series", {"PatientID": "*", "includefield": "all"}, "any"),
    ("/dicom-web/series", {"PatientID": "S-*", "includefield": "all"}, "south"),
    ("/dicom-web/instances", {"includefield": "all"}, "any"),
    ("/dicom-web/instances", {"PatientName": "*", "fuzzymatching": "true"}, "any"),
    ("/dicom-web/instances", {"PatientID": "S-SAME", "includefield": "all"}, "south"),
]


@pytest.mark.parametrize(("path", "params", "target"), QIDO_CASES, ids=lambda v: str(v))
def test_qido_never_returns_the_other_tenants_data(
    api: Api, world: World, path: str, params: dict[str, str], target: str
) -> None:
    results = _qido(api, world.north_tech, path, params)
    studies = {_first(r, STUDY_UID) for r in results}
    patients = {_first(r, PATIENT_ID) for r in results} - {None}
    assert studies <= world.north_studies
    assert not patients & world.south_patients
    assert world.south_only.study not in studies
    if target == "any":
        assert studies, "the north user must see its own data (positive control)"
    else:
        assert studies == set()
        assert _qido(api, world.south_tech, path, params), "the query does match south's data"


@pytest.mark.parametrize(
    "level", ["/dicom-web/studies", "/dicom-web/series", "/dicom-web/instances"]
)
def test_qido_for_the_other_tenants_uids_is_empty(api: Api, world: World, level: str) -> None:
    s = world.south_only
    params = {"StudyInstanceUID": s.study, "includefield": "all"}
    assert _qido(api, world.north_tech, level, params) == []
    # Positive control: the south user finds it.
    assert _qido(api, world.south_tech, level, params) != []


@pytest.mark.parametrize(
    "path",
    [
        "/dicom-web/studies/{study}/series",
        "/dicom-web/studies/{study}/instances",
        "/dicom-web/studies/{study}/series/{series}/instances",
    ],
)
def test_qido_under_another_tenants_study_looks_like_an_unknown_one(
    api: Api, world: World, path: str
) -> None:
    foreign = _answer(api, world.north_tech, _fill(path, world.south_only))
    unknown = _answer(api, world.north_tech, _fill(path, world.unknown))
    assert foreign == unknown
    assert foreign[0] == 200 and foreign[1] == []


def test_paging_through_everything_stays_in_the_tenant(api: Api, world: World) -> None:
    seen: list[str] = []
    for offset in range(0, 8):
        page = _qido(api, world.north_tech, "/dicom-web/studies", {"limit": 1, "offset": offset})
        assert len(page) <= 1
        seen.extend(_first(r, STUDY_UID) for r in page)
    assert len(seen) == len(set(seen))
    assert set(seen) == world.north_studies


def test_the_shared_uid_shows_each_tenant_its_own_patient(api: Api, world: World) -> None:
    query = {"StudyInstanceUID": world.same_north.study, "includefield": "all"}
    north = _qido(api, world.north_tech, "/dicom-web/studies", query)
    south = _qido(api, world.south_tech, "/dicom-web/studies", query)
    assert [_first(r, PATIENT_ID) for r in north] == ["N-SAME"]
    assert [_first(r, PATIENT_ID) for r in south] == ["S-SAME"]
    both = _qido(api, world.both_radiologist, "/dicom-web/studies", query)
    assert {_first(r, PATIENT_ID) for r in both} == {"N-SAME", "S-SAME"}


# -- WADO and every other GET route under a study --------------------------------------------------
def _study_routes(prefix: str) -> list[str]:
    """Every declared GET route under a study of ``prefix`` (WADO, rendered, thumbnails...)."""
    return sorted(
        path
        for (method, path), policy in ROUTE_POLICIES.items()
        if method == "GET"
        and path.startswith(prefix + "/studies/{study}")
        and policy.action is Action.RETRIEVE
    )


RETRIEVE_ROUTES = _study_routes("/dicom-web")


def _bulk_path(api: Api, account: Account, s: Study) -> str:
    url = f"/dicom-web/studies/{s.study}/series/{s.series}/instances/{s.sop}/metadata"
    response = api.http.get(url, headers={**account.headers, **DICOM_JSON})
    assert response.status_code == 200, response.text
    uri: str = response.json()[0][PIXEL_DATA]["BulkDataURI"]
    return uri.split("/bulkdata/", 1)[1]


def _fill(path: str, s: Study, *, tenant: str = "", bulk: str = "7FE00010") -> str:
    fields = {
        "study": s.study,
        "series": s.series,
        "sop": s.sop,
        "frames": "1",
        "path": bulk,
        "tenant": tenant,
    }
    return _PLACEHOLDER.sub(lambda m: fields[m.group(1)], path)


def _answer(api: Api, account: Account, url: str, method: str = "GET") -> tuple[int, Any]:
    response = api.http.request(method, url, headers=account.headers)
    try:
        body: Any = response.json()
    except ValueError:
        body = response.content
    return response.status_code, body


@pytest.fixture(scope="module")
def south_bulk_path(api: Api, world: World) -> str:
    return _bulk_path(api, world.south_tech, world.south_only)


def test_every_retrieve_route_is_covered() -> None:
    tails = {p.removeprefix("/dicom-web/studies/{study}") for p in RETRIEVE_ROUTES}
    for expected in (
        "",
        "/metadata",
        "/series/{series}",
        "/series/{series}/metadata",
        "/series/{series}/instances/{sop}",
        "/series/{series}/instances/{sop}/metadata",
        "/series/{series}/instances/{sop}/frames/{frames}",
        "/series/{series}/instances/{sop}/bulkdata/{path:path}",
    ):
        assert expected in tails


@pytest.mark.parametrize("path", RETRIEVE_ROUTES)
def test_another_tenants_data_answers_like_an_unknown_uid(
    api: Api, world: World, south_bulk_path: str, path: str
) -> None:
    url = _fill(path, world.south_only, bulk=south_bulk_path)
    # Positive control: the owner gets it.
    assert _answer(api, world.south_tech, url)[0] != 404
    foreign = _answer(api, world.north_tech, url)
    unknown = _answer(api, world.north_tech, _fill(path, world.unknown, bulk=south_bulk_path))
    assert foreign[0] == 404
    assert foreign == unknown
    # A user holding the tenant does not reach it through the other tenant's prefix either.
    tenant_path = "/tenants/{tenant}" + path
    assert (
        _answer(
            api,
            world.both_radiologist,
            _fill(tenant_path, world.south_only, tenant=world.north, bulk=south_bulk_path),
        )[0]
        == 404
    )


@pytest.mark.parametrize("path", RETRIEVE_ROUTES)
def test_a_tenant_the_user_lacks_looks_like_no_tenant(
    api: Api, world: World, south_bulk_path: str, path: str
) -> None:
    tenant_path = "/tenants/{tenant}" + path
    lacked = _answer(
        api,
        world.north_tech,
        _fill(tenant_path, world.south_only, tenant=world.south, bulk=south_bulk_path),
    )
    nowhere = _answer(
        api,
        world.north_tech,
        _fill(tenant_path, world.south_only, tenant="no-such-tenant", bulk=south_bulk_path),
    )
    assert lacked[0] == 404
    assert lacked == nowhere


def _instance_url(s: Study, base: str = "/dicom-web") -> str:
    return f"{base}/studies/{s.study}/series/{s.series}/instances/{s.sop}"


def _retrieved(api: Api, account: Account, url: str) -> bytes:
    response = api.http.get(url, headers={**account.headers, "Accept": "application/dicom"})
    assert response.status_code == 200, response.text
    return response.content


def test_the_same_uid_never_leaks_across_tenants(api: Api, world: World) -> None:
    assert (
        _retrieved(api, world.north_tech, _instance_url(world.same_north)) == world.same_north.data
    )
    assert (
        _retrieved(api, world.south_tech, _instance_url(world.same_south)) == world.same_south.data
    )
    both = world.both_radiologist
    north_base = f"/tenants/{world.north}/dicom-web"
    south_base = f"/tenants/{world.south}/dicom-web"
    assert (
        _retrieved(api, both, _instance_url(world.same_north, north_base)) == world.same_north.data
    )
    assert (
        _retrieved(api, both, _instance_url(world.same_south, south_base)) == world.same_south.data
    )


def test_storing_the_same_uid_again_in_one_tenant_does_not_touch_the_other(
    api: Api, world: World
) -> None:
    again = api.stow(world.south_tech.headers, [world.same_south.data])
    assert again.status_code == 200, again.text
    assert (
        _retrieved(api, world.north_tech, _instance_url(world.same_north)) == world.same_north.data
    )
    metadata = api.http.get(
        _instance_url(world.same_north) + "/metadata",
        headers={**world.north_tech.headers, **DICOM_JSON},
    )
    assert _first(metadata.json()[0], PATIENT_ID) == "N-SAME"


# -- the per-tenant prefix -------------------------------------------------------------------------
def test_the_tenant_prefix_serves_exactly_that_tenant(api: Api, world: World) -> None:
    both = world.both_radiologist
    north = _qido(api, both, f"/tenants/{world.north}/dicom-web/studies", {"includefield": "all"})
    south = _qido(api, both, f"/tenants/{world.south}/dicom-web/studies", {"includefield": "all"})
    assert {_first(r, PATIENT_ID) for r in north} == world.north_patients
    assert {_first(r, PATIENT_ID) for r in south} == world.south_patients
    spanning = _qido(api, both, "/dicom-web/studies", {"includefield": "all"})
    assert {_first(r, PATIENT_ID) for r in spanning} == world.north_patients | world.south_patients


def test_urls_in_answers_keep_the_tenant_prefix(api: Api, world: World) -> None:
    public = api.server.base_url
    base = f"/tenants/{world.north}/dicom-web"
    s = world.north_only
    found = _qido(api, world.north_tech, f"{base}/studies", {"StudyInstanceUID": s.study})
    assert _first(found[0], RETRIEVE_URL) == f"{public}{base}/studies/{s.study}"
    series = _qido(api, world.north_tech, f"{base}/studies/{s.study}/series", {})
    assert _first(series[0], RETRIEVE_URL) == f"{public}{base}/studies/{s.study}/series/{s.series}"
    metadata = api.http.get(
        f"{base}/studies/{s.study}/metadata", headers={**world.north_tech.headers, **DICOM_JSON}
    )
    uri = metadata.json()[0][PIXEL_DATA]["BulkDataURI"]
    assert uri.startswith(f"{public}{base}/studies/{s.study}/series/{s.series}/instances/{s.sop}/")
    bulk = api.http.get(uri, headers=world.north_tech.headers)
    assert bulk.status_code == 200
    assert parse_multipart(bulk)
    # ... and /dicom-web answers with /dicom-web URLs.
    plain = _qido(api, world.north_tech, "/dicom-web/studies", {"StudyInstanceUID": s.study})
    assert _first(plain[0], RETRIEVE_URL) == f"{public}/dicom-web/studies/{s.study}"


def test_stow_through_the_tenant_prefix_answers_with_its_urls(api: Api, world: World) -> None:
    base = f"/tenants/{world.north}/dicom-web"
    s = _study("N-STOW")
    response = api.stow(world.north_tech.headers, [s.data], base=base)
    assert response.status_code == 200, response.text
    assert _first(response.json(), RETRIEVE_URL).startswith(f"{api.server.base_url}{base}/")
    found = _qido(api, world.north_tech, f"{base}/studies", {"StudyInstanceUID": s.study})
    assert [_first(r, PATIENT_ID) for r in found] == ["N-STOW"]


# -- writes ----------------------------------------------------------------------------------------
def test_stow_into_a_tenant_the_user_lacks_is_refused(api: Api, world: World) -> None:
    s = _study("N-INTRUDER")
    refused = api.stow(world.north_tech.headers, [s.data], base=f"/tenants/{world.south}/dicom-web")
    assert refused.status_code == 404
    params = {"StudyInstanceUID": s.study}
    assert _qido(api, world.south_tech, "/dicom-web/studies", params) == []
    assert _qido(api, world.north_tech, "/dicom-web/studies", params) == []


DELETE_PATHS = [
    "/studies/{study}",
    "/studies/{study}/series/{series}",
    "/studies/{study}/series/{series}/instances/{sop}",
]


@pytest.mark.parametrize("path", DELETE_PATHS)
def test_delete_cannot_touch_another_tenants_data(api: Api, world: World, path: str) -> None:
    target = world.south_only
    foreign = _answer(api, world.north_admin, _fill("/dicom-web" + path, target), "DELETE")
    unknown = _answer(api, world.north_admin, _fill("/dicom-web" + path, world.unknown), "DELETE")
    assert foreign[0] == 404
    assert foreign == unknown
    lacked = _fill("/tenants/{tenant}/dicom-web" + path, target, tenant=world.south)
    assert _answer(api, world.north_admin, lacked, "DELETE")[0] == 404
    assert _retrieved(api, world.south_tech, _instance_url(target)) == target.data


def test_delete_of_a_uid_held_in_two_tenants_acts_on_the_write_tenant_only(
    api: Api, world: World
) -> None:
    """/dicom-web deletes in the default tenant; the same UID elsewhere stays (no 500 either)."""
    north, south = world.delete_north, world.delete_south
    response = api.http.delete(
        f"/dicom-web/studies/{north.study}", headers=world.both_admin.headers
    )
    assert response.status_code == 204, response.text
    gone = api.http.get(_instance_url(north), headers=world.north_tech.headers)
    assert gone.status_code == 404
    assert _retrieved(api, world.south_tech, _instance_url(south)) == south.data
    again = api.http.delete(f"/dicom-web/studies/{north.study}", headers=world.both_admin.headers)
    assert again.status_code == 404
    # Through the other tenant's prefix the admin holding it can delete it there.
    there = api.http.delete(
        f"/tenants/{world.south}/dicom-web/studies/{south.study}/series/{south.series}",
        headers=world.both_admin.headers,
    )
    assert there.status_code == 204
    assert api.http.get(_instance_url(south), headers=world.south_tech.headers).status_code == 404


def test_unique_uids_of_the_fixture() -> None:
    """The fixture's own UIDs are distinct where they must be (guards the test, not the server)."""
    a, b = _study("A"), _study("B")
    assert len({a.study, a.series, a.sop, b.study, b.series, b.sop}) == 6
