"""The token endpoint (RFC 6749) and sessions over real HTTP, and what ends a token's life.

Password and client-credentials grants (secret in the body or HTTP Basic), refresh-token rotation
with reuse detection, logout, RFC 6749 5.2 errors (never FastAPI's 422), browser sessions in
HttpOnly cookies with a CSRF token, partner clients narrowed by scopes and held to an IP
allowlist on every request, and access tokens that stop working as soon as the user is logged
out, disabled, deleted or given other roles or tenants.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx
import pytest

from tests.api.support import Account, Api, bearer, outlast_reuse_grace
from tests.integration.support_data import fresh_ct, multipart_body, stow_content_type

STUDIES = "/dicom-web/studies"


@pytest.fixture(scope="module")
def tenant(api: Api) -> str:
    return api.tenant("flows")


@pytest.fixture
def user(api: Api, tenant: str) -> Account:
    return api.user(["technician"], [tenant], prefix="flow")


def _password(api: Api, account: Account, **kwargs: object) -> httpx.Response:
    return api.token_request(
        {"grant_type": "password", "username": account.username, "password": account.password},
        **kwargs,
    )


def _ok(api: Api, token: str) -> int:
    return api.http.get(STUDIES, headers=bearer(token)).status_code


# -- password grant --------------------------------------------------------------------------------
def test_password_grant_answers_an_rfc_6749_token_response(api: Api, user: Account) -> None:
    response = _password(api, user)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"] and body["refresh_token"]
    assert _ok(api, body["access_token"]) == 200


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password", "username": "nobody-at-all", "password": "x"}, "invalid_grant"),
        ({"grant_type": "password", "username": "{user}", "password": "wrong"}, "invalid_grant"),
        ({"grant_type": "password", "username": "{user}"}, "invalid_request"),
        ({"grant_type": "password", "username": "{user}", "password": ""}, "invalid_request"),
        ({"username": "{user}", "password": "x"}, "invalid_request"),
        ({"grant_type": ""}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "not-one-of-ours"}, "invalid_grant"),
    ],
)
def test_token_errors_are_rfc_6749_json(
    api: Api, user: Account, data: dict[str, str], error: str
) -> None:
    filled = {k: v.replace("{user}", user.username) for k, v in data.items()}
    response = api.token_request(filled)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def test_no_form_body_is_invalid_request_not_422(api: Api, user: Account) -> None:
    grant = {"grant_type": "password", "username": user.username, "password": user.password}
    for kwargs in (
        {},
        {"json": grant},
        {"content": b"grant_type=password", "headers": {"Content-Type": "text/plain"}},
        {"files": {"grant_type": (None, "password")}},
    ):
        response = api.http.post("/api/v1/auth/token", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400, (kwargs, response.text)
        assert response.json()["error"] == "invalid_request"


def test_a_repeated_parameter_is_invalid_request(api: Api, user: Account) -> None:
    body = (
        f"grant_type=password&username={quote(user.username)}&password={quote(user.password)}"
        "&password=other"
    )
    response = api.http.post(
        "/api/v1/auth/token",
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# -- refresh tokens and logout ---------------------------------------------------------------------
def _refresh(api: Api, token: str) -> httpx.Response:
    return api.token_request({"grant_type": "refresh_token", "refresh_token": token})


def test_refresh_rotates_and_reuse_revokes_the_whole_family(api: Api, user: Account) -> None:
    first = _password(api, user).json()
    second = _refresh(api, first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert _ok(api, rotated["access_token"]) == 200
    outlast_reuse_grace()
    reused = _refresh(api, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # The family is gone: the newest refresh token and every access token of the session.
    assert _refresh(api, rotated["refresh_token"]).status_code == 400
    assert _ok(api, rotated["access_token"]) == 401
    assert _ok(api, first["access_token"]) == 401
    # Another login of the same user is another family, untouched.
    assert _ok(api, user.access_token) == 200


def test_a_second_use_within_the_grace_is_the_same_renewal(api: Api, user: Account) -> None:
    """Two tabs renewing at one instant, or a retry after a lost answer: not a stolen token."""
    first = _password(api, user).json()
    once, twice = _refresh(api, first["refresh_token"]), _refresh(api, first["refresh_token"])
    assert once.status_code == 200 and twice.status_code == 200, twice.text
    assert once.json()["refresh_token"] != twice.json()["refresh_token"]
    for answer in (once, twice):
        assert _ok(api, answer.json()["access_token"]) == 200
    # Each new refresh token is good for its own rotation; the spent one, past its grace, is
    # reuse again and ends the session.
    assert _refresh(api, twice.json()["refresh_token"]).status_code == 200
    outlast_reuse_grace()
    assert _refresh(api, first["refresh_token"]).status_code == 400
    assert _ok(api, once.json()["access_token"]) == 401
    assert _refresh(api, once.json()["refresh_token"]).status_code == 400


def test_logout_ends_the_session_and_only_that_session(api: Api, user: Account) -> None:
    session = _password(api, user).json()
    response = api.http.post(
        "/api/v1/auth/logout",
        data={"refresh_token": session["refresh_token"]},
        headers=bearer(session["access_token"]),
    )
    assert response.status_code == 204
    assert _ok(api, session["access_token"]) == 401
    assert _refresh(api, session["refresh_token"]).status_code == 400
    assert _ok(api, user.access_token) == 200


def test_logout_with_only_the_access_token(api: Api, user: Account) -> None:
    session = _password(api, user).json()
    response = api.http.post("/api/v1/auth/logout", headers=bearer(session["access_token"]))
    assert response.status_code == 204
    assert _ok(api, session["access_token"]) == 401
    assert _refresh(api, session["refresh_token"]).status_code == 400


# -- what else ends an access token ----------------------------------------------------------------
def _patch(api: Api, account: Account, **changes: object) -> None:
    response = api.admin("PATCH", f"/api/v1/users/{account.username}", json=changes)
    assert response.status_code == 200, response.text


def test_disabling_a_user_ends_its_access_tokens_at_once(api: Api, user: Account) -> None:
    assert _ok(api, user.access_token) == 200
    _patch(api, user, disabled=True)
    assert _ok(api, user.access_token) == 401
    assert _password(api, user).status_code == 400
    _patch(api, user, disabled=False)
    assert _ok(api, user.access_token) == 401  # its sessions were revoked, not suspended
    assert _password(api, user).status_code == 200


def test_a_role_change_ends_the_old_tokens(api: Api, user: Account) -> None:
    _patch(api, user, roles=["radiologist"])
    assert _ok(api, user.access_token) == 401
    fresh = _password(api, user).json()
    assert api.me(bearer(fresh["access_token"])).json()["roles"] == ["radiologist"]


def test_a_tenant_change_ends_the_old_tokens(api: Api, user: Account, tenant: str) -> None:
    other = api.tenant("flows-other")
    _patch(api, user, tenants=[other])
    assert _ok(api, user.access_token) == 401
    renewed = _refresh(api, user.refresh_token or "")
    assert renewed.status_code == 200  # the session goes on, with the new tenants
    assert api.me(bearer(renewed.json()["access_token"])).json()["tenants"] == [other]


def test_deleting_a_user_ends_its_tokens(api: Api, user: Account) -> None:
    assert api.admin("DELETE", f"/api/v1/users/{user.username}").status_code == 204
    assert _ok(api, user.access_token) == 401
    assert _refresh(api, user.refresh_token or "").status_code == 400


# -- partner clients -------------------------------------------------------------------------------
def _client_body(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def test_client_credentials_in_the_body_and_in_http_basic(api: Api, tenant: str) -> None:
    partner = api.partner([tenant])
    body = api.client_token(partner)
    assert body.status_code == 200
    token = body.json()
    assert token["token_type"] == "Bearer" and "refresh_token" not in token
    assert _ok(api, token["access_token"]) == 200
    credentials = f"{quote(partner.client_id)}:{quote(partner.client_secret)}"
    basic = api.token_request(
        {"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()},
    )
    assert basic.status_code == 200
    me = api.me(bearer(basic.json()["access_token"])).json()
    assert me["kind"] == "client" and me["roles"] == ["partner"] and me["tenants"] == [tenant]


def test_client_authentication_failures(api: Api, tenant: str) -> None:
    partner = api.partner([tenant])
    wrong = api.token_request(_client_body(partner.client_id, "wrong-secret"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    bad_basic = api.token_request(
        {"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(b"dv-x:nope").decode()},
    )
    assert bad_basic.status_code == 401
    assert bad_basic.headers["www-authenticate"].startswith("Basic")
    missing = api.token_request({"grant_type": "client_credentials"})
    assert missing.status_code == 401 and missing.json()["error"] == "invalid_client"
    credentials = base64.b64encode(f"{partner.client_id}:{partner.client_secret}".encode())
    both = api.token_request(
        _client_body(partner.client_id, partner.client_secret),
        headers={"Authorization": "Basic " + credentials.decode()},
    )
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"


def test_deleting_a_client_ends_its_tokens(api: Api, tenant: str) -> None:
    partner = api.partner([tenant])
    token = api.client_token(partner).json()["access_token"]
    assert api.admin("DELETE", f"/api/v1/clients/{partner.client_id}").status_code == 204
    assert _ok(api, token) == 401
    assert api.client_token(partner).status_code == 401


def test_partner_scopes_narrow_what_the_client_may_do(api: Api, tenant: str) -> None:
    searcher = api.partner([tenant], scopes=["dicom.search"])
    token = api.client_token(searcher).json()
    assert token["scope"] == "dicom.search"
    headers = bearer(token["access_token"])
    assert api.http.get(STUDIES, headers=headers).status_code == 200
    assert api.http.get(f"{STUDIES}/1.2.3", headers=headers).status_code == 403
    assert api.stow(headers, [fresh_ct()]).status_code == 403
    exceeding = api.client_token(searcher, scope="dicom.search dicom.store")
    assert exceeding.status_code == 400 and exceeding.json()["error"] == "invalid_scope"
    # An unnarrowed partner may ask for less, and gets less.
    broad = api.partner([tenant])
    narrowed = api.client_token(broad, scope="dicom.retrieve").json()
    narrowed_headers = bearer(narrowed["access_token"])
    assert api.http.get(STUDIES, headers=narrowed_headers).status_code == 403
    assert api.http.get(f"{STUDIES}/1.2.3", headers=narrowed_headers).status_code == 404
    # Roles bound scopes: a partner cannot obtain what its role lacks.
    admin_scope = api.client_token(broad, scope="dicom.delete").json()["access_token"]
    assert api.http.delete(f"{STUDIES}/1.2.3", headers=bearer(admin_scope)).status_code == 403


def test_the_ip_allowlist_is_checked_at_issue_and_on_every_request(api: Api, tenant: str) -> None:
    partner = api.partner([tenant], allowed_ips=["10.20.0.0/16", "2001:db8::/32"])
    assert api.client_token(partner, via="192.0.2.1").status_code == 401
    assert api.client_token(partner).status_code == 401  # 127.0.0.1 itself is not allowed
    issued = api.client_token(partner, via="10.20.3.4")
    assert issued.status_code == 200
    token = issued.json()["access_token"]

    def from_(address: str | None) -> int:
        headers = {**bearer(token), **({"X-Forwarded-For": address} if address else {})}
        return api.http.get(STUDIES, headers=headers).status_code

    assert from_("10.20.9.9") == 200
    assert from_("2001:db8::7") == 200
    assert from_("192.0.2.1") == 403
    assert from_(None) == 403
    # Only the hop the trusted proxy saw counts; what the client wrote left of it does not.
    assert from_("10.20.1.1, 192.0.2.1") == 403
    assert from_("192.0.2.1, 10.20.1.1") == 200


# -- browser sessions ------------------------------------------------------------------------------
def test_browser_session_cookies_and_csrf(api: Api, user: Account) -> None:
    with httpx.Client(base_url=api.server.base_url, timeout=60) as browser:
        login = browser.post(
            "/api/v1/auth/session", data={"username": user.username, "password": user.password}
        )
        assert login.status_code == 200
        csrf = login.json()["csrf_token"]
        cookies = {c.split("=", 1)[0]: c for c in login.headers.get_list("set-cookie")}
        for name in ("dv_access", "dv_refresh"):
            assert "HttpOnly" in cookies[name] and "SameSite=strict" in cookies[name].replace(
                "Strict", "strict"
            )
        assert "Path=/api/v1/auth" in cookies["dv_refresh"]
        assert "HttpOnly" not in cookies["dv_csrf"]
        assert browser.get(STUDIES).status_code == 200
        assert browser.get("/api/v1/auth/me").json()["name"] == user.username

        body, boundary = multipart_body([fresh_ct()])
        content_type = {"Content-Type": stow_content_type(boundary)}
        assert browser.post(STUDIES, content=body, headers=content_type).status_code == 403
        wrong = {**content_type, "X-CSRF-Token": "not-the-token"}
        assert browser.post(STUDIES, content=body, headers=wrong).status_code == 403
        right = {**content_type, "X-CSRF-Token": csrf}
        assert browser.post(STUDIES, content=body, headers=right).status_code == 200

        logout = browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        assert logout.status_code == 204
        browser.cookies.clear()
        assert browser.get(STUDIES).status_code == 401


def test_a_stolen_session_cookie_dies_with_logout(api: Api, user: Account) -> None:
    with httpx.Client(base_url=api.server.base_url, timeout=60) as browser:
        browser.post(
            "/api/v1/auth/session", data={"username": user.username, "password": user.password}
        )
        stolen = browser.cookies.get("dv_access")
        assert stolen
        assert browser.post("/api/v1/auth/logout").status_code == 204
    with httpx.Client(base_url=api.server.base_url, cookies={"dv_access": stolen}) as thief:
        assert thief.get(STUDIES).status_code == 401


def test_session_login_errors(api: Api, user: Account) -> None:
    bad = api.http.post(
        "/api/v1/auth/session", data={"username": user.username, "password": "wrong"}
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    assert "set-cookie" not in bad.headers
    missing = api.http.post("/api/v1/auth/session", json={"username": user.username})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_who_am_i(api: Api, user: Account, tenant: str) -> None:
    me = api.me(user.headers).json()
    assert me["name"] == user.username and me["kind"] == "user"
    assert me["roles"] == ["technician"] and me["tenants"] == [tenant]
    assert me["default_tenant"] == tenant
    assert api.me({}).status_code == 401


def test_browser_session_renews_from_its_refresh_cookie(api: Api, user: Account) -> None:
    with httpx.Client(base_url=api.server.base_url, timeout=60) as browser:
        login = browser.post(
            "/api/v1/auth/session", data={"username": user.username, "password": user.password}
        )
        csrf = login.json()["csrf_token"]
        cookies = {c.split("=", 1)[0]: c for c in login.headers.get_list("set-cookie")}
        # The renewal marker: readable by the page's script, gone a minute before the access
        # cookie is (both lifetimes relative, counted by the browser's clock).
        expires_in = login.json()["expires_in"]
        assert "HttpOnly" not in cookies["dv_session_fresh"]
        assert f"Max-Age={expires_in - 60}" in cookies["dv_session_fresh"]
        assert browser.cookies["dv_session_fresh"] == "60"  # the margin, for the page's timing
        assert f"Max-Age={expires_in}" in cookies["dv_access"]
        assert "Max-Age=" in cookies["dv_csrf"]  # outlives a browser restart, like the refresh
        first_access, first_refresh = browser.cookies["dv_access"], browser.cookies["dv_refresh"]

        # A cookie is a credential the browser sends by itself: the CSRF header is required.
        assert browser.post("/api/v1/auth/session/refresh").status_code == 403
        renewed = browser.post("/api/v1/auth/session/refresh", headers={"X-CSRF-Token": csrf})
        assert renewed.status_code == 200, renewed.text
        # The CSRF cookie keeps its value and moves its lifetime on with the refresh cookie's.
        renewed_cookies = {c.split("=", 1)[0]: c for c in renewed.headers.get_list("set-cookie")}
        assert renewed_cookies["dv_csrf"].startswith(f"dv_csrf={csrf};")
        assert "Max-Age=" in renewed_cookies["dv_csrf"]
        assert renewed.json()["expires_in"] > 0
        assert "no-store" in renewed.headers["cache-control"]
        assert browser.cookies["dv_access"] != first_access
        assert browser.cookies["dv_refresh"] != first_refresh
        assert browser.get("/api/v1/auth/me").json()["name"] == user.username

        # Another tab that renewed at the same instant sent the same cookie: it is renewed too.
        with httpx.Client(base_url=api.server.base_url, timeout=60) as tab:
            tab.cookies.set("dv_refresh", first_refresh, path="/api/v1/auth")
            tab.cookies.set("dv_csrf", csrf)
            twin = tab.post("/api/v1/auth/session/refresh", headers={"X-CSRF-Token": csrf})
            assert twin.status_code == 200, twin.text
            assert tab.get("/api/v1/auth/me").json()["name"] == user.username
        assert browser.get("/api/v1/auth/me").status_code == 200

        # The spent refresh cookie, sent again later (a copy of it stolen): the session ends.
        outlast_reuse_grace()
        with httpx.Client(base_url=api.server.base_url, timeout=60) as thief:
            thief.cookies.set("dv_refresh", first_refresh, path="/api/v1/auth")
            thief.cookies.set("dv_csrf", csrf)
            reused = thief.post("/api/v1/auth/session/refresh", headers={"X-CSRF-Token": csrf})
            assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        assert browser.get(STUDIES).status_code == 401


def test_session_refresh_without_a_session(api: Api) -> None:
    bare = api.http.post("/api/v1/auth/session/refresh")
    assert bare.status_code == 400 and bare.json()["error"] == "invalid_grant"
    assert "set-cookie" not in bare.headers
    cookies = {"dv_refresh": "not-a-refresh-token", "dv_csrf": "t"}
    with httpx.Client(base_url=api.server.base_url, cookies=cookies, timeout=60) as forger:
        forged = forger.post("/api/v1/auth/session/refresh", headers={"X-CSRF-Token": "t"})
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_grant"
