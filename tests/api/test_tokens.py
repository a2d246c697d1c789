"""Token tampering over HTTP: every forged, altered or stale token is refused with 401.

This module's server knows its signing secret (so the tests can also make tokens that are
correctly signed but wrong in a claim) and trusts one OIDC provider whose JWKS a small HTTP server
in the test serves. The provider signs with RS256; claims map to roles and tenants through the
configured ``role_map`` / ``tenant_map``; a new key (new ``kid``) in the JWKS is picked up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.api.support import API_ENV, Account, Api, bearer
from tests.support.server import LiveServer, running_server

SECRET = "tokens-test-signing-secret-0123456789abcdef"  # >= 32 characters: accepted in production
ISSUER = "dicomvault"
AUDIENCE = "dicomvault"
PROVIDER_ISSUER = "https://idp.example.org/realms/hospital"
PROVIDER_AUDIENCE = "dicomvault-api"
PROTECTED = "/dicom-web/studies"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class Jwks:
    """The provider's JWKS endpoint: a tiny HTTP server whose key set a test can replace."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}/certs"


@dataclass
class Provider:
    jwks: Jwks
    key: rsa.RSAPrivateKey
    kid: str

    def token(
        self, *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": PROVIDER_ISSUER,
            "aud": PROVIDER_AUDIENCE,
            "sub": "f0e1d2c3",
            "iat": now,
            "exp": now + 600,
            "preferred_username": "dr.oidc",
            "realm_access": {"roles": ["pacs-radiologist", "offline_access"]},
            "groups": ["north-hospital"],
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@dataclass
class Setup:
    server: LiveServer
    api: Api
    provider: Provider
    tenant: str
    technician: Account


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    jwks = Jwks()
    key = _key()
    jwks.keys = [_jwk(key, "key-1")]
    http_server, jwks_url = jwks.serve()
    provider_config = {
        "issuer": PROVIDER_ISSUER,
        "audience": PROVIDER_AUDIENCE,
        "jwks_url": jwks_url,
        "roles_claim": "realm_access.roles",
        "tenants_claim": "groups",
        "role_map": {"pacs-radiologist": "radiologist", "pacs-admin": "admin"},
        "tenant_map": {"north-hospital": "north", "south-hospital": "south"},
        "jwks_refresh_cooldown": 0,
    }
    env = {
        **API_ENV,
        "DICOMVAULT_JWT_SECRET": SECRET,
        "DICOMVAULT_OIDC_PROVIDERS": json.dumps([provider_config]),
    }
    data = tmp_path_factory.mktemp("tokens") / "data"
    try:
        with running_server(data, env=env) as server:
            api = Api(server)
            for name in ("north", "south"):
                assert api.admin("POST", "/api/v1/tenants", json={"name": name}).status_code == 201
            technician = api.user(["technician"], ["north"], prefix="tech")
            yield Setup(server, api, Provider(jwks, key, "key-1"), "north", technician)
            api.close()
    finally:
        http_server.shutdown()


def _status(setup: Setup, token: str) -> int:
    return setup.api.http.get(PROTECTED, headers=bearer(token)).status_code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload)), signature


def _assemble(header: dict[str, Any], payload: dict[str, Any], signature: str) -> str:
    encode = lambda d: _b64(json.dumps(d, separators=(",", ":")).encode())  # noqa: E731
    return f"{encode(header)}.{encode(payload)}.{signature}"


def _local_claims(setup: Setup) -> dict[str, Any]:
    """The claims of the technician's genuine token (to re-sign with changes)."""
    return _parts(setup.technician.access_token)[1]


def _signed(claims: dict[str, Any], **changes: Any) -> str:
    body = {**claims, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, SECRET, algorithm="HS256")


# -- genuine tokens work (so every refusal below is about the change) -----------------------------
def test_the_genuine_local_token_is_accepted(setup: Setup) -> None:
    assert _status(setup, setup.technician.access_token) == 200
    assert _status(setup, _signed(_local_claims(setup))) == 200


def test_a_provider_token_maps_claims_to_role_and_tenant(setup: Setup) -> None:
    token = setup.provider.token()
    me = setup.api.me(bearer(token))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["kind"] == "external"
    assert body["roles"] == ["radiologist"]
    assert body["tenants"] == ["north"]
    assert body["name"] == "dr.oidc"
    assert _status(setup, token) == 200


def test_unmapped_provider_roles_and_tenants_grant_nothing(setup: Setup) -> None:
    token = setup.provider.token(
        realm_access={"roles": ["pacs-janitor"]}, groups=["north-hospital-annex"]
    )
    me = setup.api.me(bearer(token)).json()
    assert me["roles"] == [] and me["tenants"] == []
    assert _status(setup, token) == 403


def test_a_new_key_in_the_jwks_is_picked_up(setup: Setup) -> None:
    provider = setup.provider
    new_key = _key()
    before = provider.jwks.fetches
    token = provider.token(key=new_key, kid="key-2")
    assert _status(setup, token) == 401  # not published yet
    provider.jwks.keys = [_jwk(provider.key, "key-1"), _jwk(new_key, "key-2")]
    assert _status(setup, token) == 200
    assert provider.jwks.fetches > before
    # The old key still works while it is published.
    assert _status(setup, provider.token()) == 200


# -- tampering: all 401 -----------------------------------------------------------------------
def _alg_none(setup: Setup) -> str:
    header, payload, _ = _parts(setup.technician.access_token)
    return _assemble({"alg": "none", "typ": "JWT"}, {**payload, "roles": ["admin"]}, "")


def _hs256_with_public_key(setup: Setup) -> str:
    """The classic key-confusion attack: HMAC keyed with the provider's (public) RSA key."""
    pem = setup.provider.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {
        "iss": PROVIDER_ISSUER,
        "aud": PROVIDER_AUDIENCE,
        "sub": "attacker",
        "iat": now,
        "exp": now + 600,
        "realm_access": {"roles": ["pacs-admin"]},
        "groups": ["north-hospital"],
    }
    header = {"alg": "HS256", "typ": "JWT", "kid": setup.provider.kid}
    signing_input = _assemble(header, claims, "").rsplit(".", 1)[0].encode()
    signature = _b64(hmac.new(pem, signing_input, hashlib.sha256).digest())
    return f"{signing_input.decode()}.{signature}"


def _forged_kid(setup: Setup) -> str:
    return setup.provider.token(
        key=_key(), kid="attacker-key", realm_access={"roles": ["pacs-admin"]}
    )


def _stripped_signature(setup: Setup) -> str:
    header, payload, _ = setup.technician.access_token.split(".")
    return f"{header}.{payload}."


def _edited_claim(setup: Setup, **changes: Any) -> str:
    header, payload, signature = _parts(setup.technician.access_token)
    return _assemble(header, {**payload, **changes}, signature)


TAMPERED = {
    "alg none": _alg_none,
    "HS256 signed with the provider's public key": _hs256_with_public_key,
    "forged kid": _forged_kid,
    "provider token signed with another key under its kid": lambda s: s.provider.token(key=_key()),
    "stripped signature": _stripped_signature,
    "edited role claim": lambda s: _edited_claim(s, roles=["admin"]),
    "edited tenant claim": lambda s: _edited_claim(s, tenants=["north", "south"]),
    "edited subject": lambda s: _edited_claim(s, sub="user:1"),
    "expired": lambda s: _signed(_local_claims(s), exp=int(time.time()) - 60),
    "nbf in the future": lambda s: _signed(_local_claims(s), nbf=int(time.time()) + 600),
    "wrong audience": lambda s: _signed(_local_claims(s), aud="someone-else"),
    "wrong issuer": lambda s: _signed(_local_claims(s), iss="https://evil.example"),
    "missing exp": lambda s: _signed(_local_claims(s), exp=None),
    "missing iat": lambda s: _signed(_local_claims(s), iat=None),
    "missing sub": lambda s: _signed(_local_claims(s), sub=None),
    "re-signed with an elevated role": lambda s: _signed(_local_claims(s), roles=["admin"]),
    "re-signed with another tenant": lambda s: _signed(_local_claims(s), tenants=["south"]),
    "provider token expired": lambda s: s.provider.token(exp=int(time.time()) - 60),
    "provider token nbf in the future": lambda s: s.provider.token(nbf=int(time.time()) + 600),
    "provider token wrong audience": lambda s: s.provider.token(aud="another-app"),
    "provider token missing exp": lambda s: s.provider.token(exp=None),
    "provider token edited role": lambda s: _edited_provider(s),
    "not a JWT": lambda s: "not-a-token",
    "empty segments": lambda s: "..",
}


def _edited_provider(setup: Setup) -> str:
    header, payload, signature = _parts(setup.provider.token())
    return _assemble(header, {**payload, "realm_access": {"roles": ["pacs-admin"]}}, signature)


@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_tampered_tokens_are_refused(setup: Setup, name: str) -> None:
    token = TAMPERED[name](setup)
    response = setup.api.http.get(PROTECTED, headers=bearer(token))
    assert response.status_code == 401, f"{name}: {response.status_code} {response.text}"
    assert response.headers["www-authenticate"].startswith("Bearer")
    # The token endpoint's sibling /me refuses it just the same.
    assert setup.api.me(bearer(token)).status_code == 401


def test_a_wrong_authorization_scheme_is_refused(setup: Setup) -> None:
    token = setup.technician.access_token
    for header in (f"Token {token}", f"Basic {token}", "Bearer", token):
        response = setup.api.http.get(PROTECTED, headers={"Authorization": header})
        assert response.status_code == 401, header


def test_tampering_is_audited_as_a_security_alert(setup: Setup) -> None:
    correlation = "tamper-" + str(time.time_ns())
    response = setup.api.http.get(
        PROTECTED, headers={**bearer(_alg_none(setup)), "X-Request-ID": correlation}
    )
    assert response.status_code == 401
    (record,) = setup.api.audit_of(correlation)
    assert (record["event_id"], record["event_type"]) == ("110113", "110143")
    assert record["outcome"] == 8


def test_the_server_log_names_no_token(setup: Setup) -> None:
    log = setup.server.log()
    assert setup.technician.access_token not in log
    assert setup.technician.access_token.split(".")[2] not in log
