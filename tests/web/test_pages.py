"""The web UI over real HTTP: sessions, redirects, escaping, headers, tenant isolation, audit,
the live-event stream and the WADO-RS ZIP download. (The browser itself: tests/browser.)"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from dicomvault.api.permissions import policy_for
from dicomvault.testing.synthetic import make_instance
from dicomvault.web.rendering import assets
from dicomvault.web.routes import router as web_router
from tests.support.server import LiveServer, running_server

PASSWORD = "web-tests-password-1"  # noqa: S105 - throwaway test server
LIVE_ENV = {"DICOMVAULT_LIVE_HEARTBEAT_SECONDS": "0.5", "DICOMVAULT_LIVE_STREAM_SECONDS": "4"}
XSS_NAME = "<script>alert('pwned')</script>"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("pages") / "data"
    with running_server(data, env=LIVE_ENV) as server:
        admin = httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30)
        for tenant in ("north", "south"):
            admin.post("/api/v1/tenants", json={"name": tenant}).raise_for_status()
        users = [
            ("alice", ["technician"], "north"),
            ("bob", ["radiologist"], "south"),
            ("audrey", ["auditor"], "north"),
        ]
        for name, roles, tenant in users:
            admin.post(
                "/api/v1/users",
                json={
                    "username": name,
                    "password": PASSWORD,
                    "roles": roles,
                    "tenants": [tenant],
                    "default_tenant": tenant,
                },
            ).raise_for_status()
        yield server


def session(live: LiveServer, username: str) -> httpx.Client:
    """A browser-like client: the session cookies, and the CSRF header echoing dv_csrf."""
    client = httpx.Client(base_url=live.base_url, timeout=30)
    response = client.post(
        "/api/v1/auth/session", data={"username": username, "password": PASSWORD}
    )
    response.raise_for_status()
    client.headers["X-CSRF-Token"] = client.cookies["dv_csrf"]
    return client


@dataclass(frozen=True)
class Stored:
    study: str
    series: str
    sop: str
    data: bytes


def store(client: httpx.Client, **attributes: object) -> Stored:
    data = make_instance(**attributes)  # type: ignore[arg-type]
    response = client.post(
        "/dicom-web/studies", content=data, headers={"Content-Type": "application/dicom"}
    )
    assert response.status_code == 200, response.text
    item = response.json()["00081199"]["Value"][0]
    url = item["00081190"]["Value"][0]
    study, series, sop = re.findall(r"/(?:studies|series|instances)/([0-9.]+)", url)
    return Stored(study, series, sop, data)


def audit_record(live: LiveServer, response: httpx.Response) -> dict[str, object]:
    correlation = response.headers["X-Request-ID"]
    found = httpx.get(
        f"{live.base_url}/api/v1/audit",
        params={"correlation_id": correlation},
        headers=live.auth_headers,
        timeout=30,
    ).json()
    assert len(found) == 1, found
    record: dict[str, object] = found[0]
    return record


# -- declared routes -------------------------------------------------------------------------------
def test_every_web_route_is_declared() -> None:
    for route in web_router.routes:
        for method in getattr(route, "methods", ()):
            assert policy_for(method, route.path) is not None, (method, route.path)  # type: ignore[attr-defined]


# -- sessions and redirects ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/", "/upload", "/studies/1.2.3", "/worklist/rows", "/?PatientID=A%26B&sort=name"]
)
def test_pages_without_a_session_redirect_to_login_with_next(live: LiveServer, path: str) -> None:
    response = httpx.get(live.base_url + path, follow_redirects=False)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]


def test_a_forged_token_on_a_page_redirects_and_is_a_security_alert(live: LiveServer) -> None:
    response = httpx.get(
        live.base_url + "/", cookies={"dv_access": "forged.token.value"}, follow_redirects=False
    )
    assert response.status_code == 303
    record = audit_record(live, response)
    assert record["event_id"] == "110113"  # Security Alert


def test_api_routes_still_answer_401_not_a_redirect(live: LiveServer) -> None:
    assert httpx.get(live.base_url + "/api/v1/events").status_code == 401
    assert httpx.get(live.base_url + "/dicom-web/studies").status_code == 401


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/studies/1.2.3", "/studies/1.2.3"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ('/"><script>x()</script>', '/"><script>x()</script>'),
    ],
)
def test_login_page_keeps_only_a_safe_next_and_escapes_it(
    live: LiveServer, given: str, expected: str
) -> None:
    response = httpx.get(live.base_url + "/login", params={"next": given})
    assert response.status_code == 200
    match = re.search(r'data-next="([^"]*)"', response.text)
    assert match is not None
    assert match.group(1) == expected.replace("&", "&amp;").replace('"', "&#34;").replace(
        "<", "&lt;"
    ).replace(">", "&gt;")
    assert "<script>x()" not in response.text


def test_pages_carry_a_strict_content_security_policy(live: LiveServer) -> None:
    alice = session(live, "alice")
    for path in ("/login", "/", "/upload", "/worklist/rows"):
        response = alice.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text), "inline script"
        assert " style=" not in response.text, "inline style"


def test_static_assets_are_served_with_their_hash_and_nothing_else(live: LiveServer) -> None:
    for name in assets():
        response = httpx.get(f"{live.base_url}/static/{name}")
        assert response.status_code == 200
        again = httpx.get(
            f"{live.base_url}/static/{name}", headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304
    for name in ("nope.js", "..%2Fpages.py", "%2e%2e%2Frendering.py"):
        assert httpx.get(f"{live.base_url}/static/{name}").status_code == 404


# -- pages -----------------------------------------------------------------------------------------
def test_patient_name_is_escaped_everywhere(live: LiveServer) -> None:
    alice = session(live, "alice")
    stored = store(alice, patient_name=XSS_NAME, patient_id="XSS0001")
    for path in ("/?PatientID=XSS0001", f"/studies/{stored.study}", "/worklist/rows"):
        text = alice.get(path).text
        assert XSS_NAME not in text, path
        assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in text, path


def test_worklist_search_and_the_audit_record_it_leaves(live: LiveServer) -> None:
    alice = session(live, "alice")
    mine = store(alice, patient_id="AUD0001", patient_name="AUDIT^ME", modality="MR")
    response = alice.get("/", params={"PatientID": "AUD0001"})
    assert response.status_code == 200
    assert mine.study in response.text
    record = audit_record(live, response)
    assert record["event_id"] == "110112"  # Query
    assert record["patient_id"] == "AUD0001"
    assert record["principal_name"] == "alice"
    assert record["tenant"] == "north"


def test_study_page_shows_series_and_is_audited_with_its_study(live: LiveServer) -> None:
    alice = session(live, "alice")
    first = store(alice, patient_id="STU0001", study_description="CT ABDOMEN", series_number=1)
    store(alice, study_uid=first.study, series_number=2, patient_id="STU0001")
    response = alice.get(f"/studies/{first.study}")
    assert response.status_code == 200
    assert response.text.count('class="series-card"') == 2
    assert "CT ABDOMEN" in response.text
    assert f"/dicom-web/studies/{first.study}/series/{first.series}/thumbnail" in response.text
    assert f"/dicom-web/studies/{first.study}?accept=application%2Fzip" in response.text
    record = audit_record(live, response)
    assert record["event_id"] == "110112"
    assert first.study in record["study_uids"]  # type: ignore[operator]


def test_bad_search_input_answers_400_with_the_problem(live: LiveServer) -> None:
    alice = session(live, "alice")
    response = alice.get("/", params={"StudyDateFrom": "2024-02-31x"})
    assert response.status_code == 400
    assert "must be a date" in response.text
    response = alice.get("/", params={"limit": "5000"})
    assert response.status_code == 400


def test_sorting_orders_and_pages_the_whole_match_set(live: LiveServer) -> None:
    alice = session(live, "alice")
    letters = "LKJIHGFEDCBA"  # stored in reverse, so that arrival order is not the answer
    for letter in letters:
        store(alice, patient_name=f"SORT^{letter}", patient_id="SORT0001")

    def names(**params: str) -> list[str]:
        query = {"PatientID": "SORT0001", "sort": "name", "limit": "10", **params}
        response = alice.get("/", params=query)
        assert response.status_code == 200
        return re.findall(r'class="patient-name">([^<]*)<', response.text)

    ascending = [f"SORT, {letter}" for letter in sorted(letters)]
    assert names(dir="asc") == ascending[:10]
    assert names(dir="asc", offset="10") == ascending[10:]
    assert names(dir="desc") == ascending[::-1][:10]
    assert names(dir="desc", offset="10") == ascending[::-1][10:]


def test_an_auditor_gets_a_403_page_not_the_worklist(live: LiveServer) -> None:
    audrey = session(live, "audrey")
    response = audrey.get("/")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "not allowed" in response.text


def test_tenants_never_see_each_others_studies(live: LiveServer) -> None:
    alice, bob = session(live, "alice"), session(live, "bob")
    north = store(alice, patient_id="TEN0001", patient_name="NORTH^ONLY")
    assert north.study in alice.get("/", params={"PatientID": "TEN0001"}).text
    assert north.study not in bob.get("/", params={"PatientID": "TEN0001"}).text
    assert "NORTH" not in bob.get("/worklist/rows").text
    assert bob.get(f"/studies/{north.study}").status_code == 404
    unknown = bob.get("/studies/1.2.3.4.5.6.7")
    assert unknown.status_code == 404
    zipped = bob.get(f"/dicom-web/studies/{north.study}", headers={"Accept": "application/zip"})
    assert zipped.status_code == 404


# -- ZIP download (WADO-RS, Accept: application/zip) ----------------------------------------------
def test_study_and_series_download_as_zip(live: LiveServer) -> None:
    alice = session(live, "alice")
    a = store(alice, patient_id="ZIP0001", series_number=1)
    b = store(alice, study_uid=a.study, series_number=2, patient_id="ZIP0001")
    c = store(alice, study_uid=a.study, series_uid=b.series, series_number=2, instance_number=2)
    response = alice.get(f"/dicom-web/studies/{a.study}", headers={"Accept": "application/zip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f'filename="{a.study}.zip"' in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    expected = {f"{s.study}/{s.series}/{s.sop}.dcm": s.data for s in (a, b, c)}
    assert {name: archive.read(name) for name in archive.namelist()} == expected
    # The accept query parameter (PS3.18 8.3.3.1): what a plain download link sends.
    series = alice.get(f"/dicom-web/studies/{a.study}/series/{b.series}?accept=application/zip")
    assert series.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(series.content)).namelist()
    assert sorted(names) == sorted(n for n in expected if f"/{b.series}/" in n)
    # Without asking for a ZIP the answer stays multipart/related.
    plain = alice.get(f"/dicom-web/studies/{a.study}")
    assert plain.headers["content-type"].startswith("multipart/related")


# -- live events (SSE) ----------------------------------------------------------------------------
@dataclass
class SseEvent:
    name: str
    data: dict[str, object]
    id: str | None


def read_events(lines: Iterator[str], until: float) -> Iterator[SseEvent | str]:
    """Parse text/event-stream lines; yields events and ``": comment"`` lines, until ``until``."""
    name, data, event_id = "message", "", None
    for line in lines:
        if time.monotonic() > until:
            return
        if line.startswith(":"):
            yield line
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line == "" and data:
            yield SseEvent(name, json.loads(data), event_id)
            name, data, event_id = "message", "", None


def next_event(events: Iterator[SseEvent | str], name: str) -> SseEvent:
    for item in events:
        if isinstance(item, SseEvent) and item.name == name:
            return item
    raise AssertionError(f"no {name} event")


def test_stream_delivers_own_tenant_instances_only(live: LiveServer) -> None:
    alice, bob = session(live, "alice"), session(live, "bob")
    deadline = time.monotonic() + 20
    with (
        alice.stream("GET", "/api/v1/events") as north_stream,
        bob.stream("GET", "/api/v1/events") as south_stream,
    ):
        assert north_stream.headers["content-type"].startswith("text/event-stream")
        south_lines = south_stream.iter_lines()
        north = read_events(north_stream.iter_lines(), deadline)
        south = read_events(south_lines, deadline)
        next_event(north, "ready")
        next_event(south, "ready")
        stored = store(alice, patient_id="SSE0001", patient_name="LIVE^EVENT")
        event = next_event(north, "instance")
        assert event.data == {
            "kind": "stored",
            "tenant": "north",
            "StudyInstanceUID": stored.study,
            "SeriesInstanceUID": stored.series,
            "SOPInstanceUID": stored.sop,
        }
        # Bob's stream carries heartbeats and then ends (live_stream_seconds), no event.
        seen = list(read_events(south_lines, time.monotonic() + 6))
        assert ": heartbeat" in seen
        assert not [e for e in seen if isinstance(e, SseEvent) and e.name == "instance"]


def test_ready_says_whether_events_were_missed(live: LiveServer) -> None:
    alice = session(live, "alice")
    deadline = time.monotonic() + 20
    with alice.stream("GET", "/api/v1/events") as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry: ")
        ready = next_event(read_events(lines, deadline), "ready")
        assert ready.data == {"missed": True}  # nothing to compare with: re-query
    position = ready.id
    assert position
    # Reconnecting at the same position: nothing happened meanwhile.
    with alice.stream("GET", "/api/v1/events", headers={"Last-Event-ID": position}) as stream:
        assert next_event(read_events(stream.iter_lines(), deadline), "ready").data == {
            "missed": False
        }
    store(alice, patient_id="SSE0002")
    with alice.stream("GET", "/api/v1/events", params={"since": position}) as stream:
        assert next_event(read_events(stream.iter_lines(), deadline), "ready").data == {
            "missed": True
        }


def page_position(client: httpx.Client, path: str = "/") -> str:
    match = re.search(r'data-live-position="([0-9a-f]{32})"', client.get(path).text)
    assert match is not None
    return match.group(1)


def test_rendered_pages_carry_the_live_position(live: LiveServer) -> None:
    alice = session(live, "alice")
    position = page_position(alice)
    assert page_position(alice, "/upload") == position
    with alice.stream("GET", "/api/v1/events", params={"since": position}) as stream:
        ready = next_event(read_events(stream.iter_lines(), time.monotonic() + 20), "ready")
    assert (ready.data, ready.id) == ({"missed": False}, position)


def test_another_tenants_ingests_move_no_position_and_miss_nothing(live: LiveServer) -> None:
    alice, bob = session(live, "alice"), session(live, "bob")
    position = page_position(alice)
    with alice.stream("GET", "/api/v1/events", params={"since": position}) as stream:
        events = read_events(stream.iter_lines(), time.monotonic() + 20)
        ready = next_event(events, "ready")
        assert (ready.data, ready.id) == ({"missed": False}, position)
        bob_stored = store(bob, patient_id="SSE0003")  # south, while alice watches north
        rest = list(events)  # heartbeats until the stream ends (live_stream_seconds)
    assert ": heartbeat" in rest
    assert not [e for e in rest if isinstance(e, SseEvent) and e.id is not None]
    assert bob_stored.study not in json.dumps([e.data for e in rest if isinstance(e, SseEvent)])
    # Bob stored while alice was away, too: she missed nothing, her position did not move.
    store(bob, patient_id="SSE0004")
    assert page_position(alice) == position
    with alice.stream("GET", "/api/v1/events", headers={"Last-Event-ID": position}) as stream:
        ready = next_event(read_events(stream.iter_lines(), time.monotonic() + 20), "ready")
    assert (ready.data, ready.id) == ({"missed": False}, position)
    # Her own tenant's ingest does move it.
    store(alice, patient_id="SSE0005")
    assert page_position(alice) != position
    with alice.stream("GET", "/api/v1/events", headers={"Last-Event-ID": position}) as stream:
        ready = next_event(read_events(stream.iter_lines(), time.monotonic() + 20), "ready")
    assert ready.data == {"missed": True} and ready.id != position


def test_server_log_has_no_patient_names(live: LiveServer) -> None:
    log = live.log()
    for secret in ("NORTH^ONLY", "LIVE^EVENT", "AUDIT^ME", "alert('pwned')"):
        assert secret not in log
    assert Path(live.log_path).exists()


def test_viewer_config_carries_the_session_keeper() -> None:
    from dicomvault.web.viewer import app_config_script

    script = app_config_script(upload=False)
    assert "window.config = config;" in script
    assert "/api/v1/auth/session/refresh" in script and "dv_session_fresh" in script
