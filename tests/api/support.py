"""Accounts, clients, tenants and DICOM data for the access-control tests, all over real HTTP.

Every helper talks to a running ``dicomvault serve`` (tests/support/server.py) through its public
API, as an administrator would: tenants, users and partner clients are made with the admin API,
tokens with the OAuth2 token endpoint. Names carry a random suffix, so modules sharing one
server never collide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration.support_data import multipart_body, stow_content_type
from tests.support.server import ADMIN_PASSWORD, LiveServer

# A second use of a refresh token this soon after the first is taken as the same renewal.
REFRESH_REUSE_GRACE = 2.0
# The module servers: tokens long enough for a test run; 127.0.0.1 is a trusted proxy, so a test
# can speak for any client address through X-Forwarded-For (as a load balancer would).
API_ENV = {
    "DICOMVAULT_ACCESS_TOKEN_TTL": "3600",
    "DICOMVAULT_REFRESH_REUSE_GRACE": str(REFRESH_REUSE_GRACE),
    "DICOMVAULT_TRUSTED_PROXIES": '["127.0.0.1"]',
}
ROLES = ("admin", "radiologist", "technician", "partner", "auditor")
USER_PASSWORD = "correct-horse-battery-staple"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def outlast_reuse_grace() -> None:
    """Wait until a refresh token used just now is past its grace: a second use is reuse."""
    time.sleep(REFRESH_REUSE_GRACE + 0.5)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    """A user made through the admin API, signed in with the password grant."""

    username: str
    password: str
    roles: tuple[str, ...]
    tenants: tuple[str, ...]
    access_token: str
    refresh_token: str | None
    subject: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


@dataclass
class PartnerClient:
    client_id: str
    client_secret: str
    body: dict[str, Any]


class Api:
    """The server's HTTP API, with the first admin's credentials at hand."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=60)
        self.admin_headers = bearer(self._token_for("admin", ADMIN_PASSWORD)["access_token"])

    def close(self) -> None:
        self.http.close()

    # -- tokens --------------------------------------------------------------------------------
    def token_request(self, data: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.http.post("/api/v1/auth/token", data=data, **kwargs)

    def _token_for(self, username: str, password: str, **kwargs: Any) -> dict[str, Any]:
        response = self.token_request(
            {"grant_type": "password", "username": username, "password": password}, **kwargs
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def login(self, username: str, password: str = USER_PASSWORD) -> dict[str, Any]:
        return self._token_for(username, password)

    def me(self, headers: dict[str, str]) -> httpx.Response:
        return self.http.get("/api/v1/auth/me", headers=headers)

    # -- administration ------------------------------------------------------------------------
    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.admin_headers, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def tenant(self, prefix: str = "t") -> str:
        name = unique(prefix)
        response = self.admin("POST", "/api/v1/tenants", json={"name": name})
        assert response.status_code == 201, response.text
        return name

    def user(
        self,
        roles: Sequence[str],
        tenants: Sequence[str],
        *,
        default_tenant: str | None = None,
        prefix: str = "user",
    ) -> Account:
        username = unique(prefix)
        body: dict[str, Any] = {
            "username": username,
            "password": USER_PASSWORD,
            "roles": list(roles),
            "tenants": list(tenants),
        }
        if default_tenant is not None:
            body["default_tenant"] = default_tenant
        created = self.admin("POST", "/api/v1/users", json=body)
        assert created.status_code == 201, created.text
        tokens = self.login(username)
        me = self.me(bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
        return Account(
            username,
            USER_PASSWORD,
            tuple(roles),
            tuple(tenants),
            tokens["access_token"],
            tokens.get("refresh_token"),
            me.json()["subject"],
        )

    def partner(self, tenants: Sequence[str], **fields: Any) -> PartnerClient:
        body = {"name": unique("partner"), "tenants": list(tenants), **fields}
        response = self.admin("POST", "/api/v1/clients", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        return PartnerClient(created["client_id"], created["client_secret"], created)

    def client_token(
        self, client: PartnerClient, *, scope: str | None = None, via: str | None = None
    ) -> httpx.Response:
        data = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        if scope is not None:
            data["scope"] = scope
        headers = {"X-Forwarded-For": via} if via else {}
        return self.token_request(data, headers=headers)

    # -- the audit trail -----------------------------------------------------------------------
    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        response = self.admin("GET", "/api/v1/audit", params={"limit": 1000, **filters})
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()
        return records

    def audit_of(self, correlation_id: str) -> list[dict[str, Any]]:
        """The records one request (sent with ``X-Request-ID: correlation_id``) left."""
        return self.audit(correlation_id=correlation_id)

    # -- DICOMweb ------------------------------------------------------------------------------
    def stow(
        self,
        headers: dict[str, str],
        instances: Iterable[bytes],
        *,
        base: str = "/dicom-web",
        study: str | None = None,
    ) -> httpx.Response:
        body, boundary = multipart_body(list(instances))
        url = f"{base}/studies" + (f"/{study}" if study else "")
        return self.http.post(
            url,
            content=body,
            headers={**headers, "Content-Type": stow_content_type(boundary)},
        )


def dicomvault_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``dicomvault`` command of this environment (the CLI as an operator uses it)."""
    exe = Path(sys.executable).parent / "dicomvault"
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
