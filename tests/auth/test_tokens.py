"""Access tokens: what this server signs verifies; every kind of tampering does not."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dicomvault.auth.principal import Principal, PrincipalKind, RatePlan, Role
from dicomvault.auth.tokens import InvalidToken, TokenIssuer

SECRET = "s" * 48
ISSUER = TokenIssuer(SECRET, "dicomvault", "dicomvault", access_ttl=300)
ALICE = Principal(
    subject="user:7",
    kind=PrincipalKind.USER,
    name="alice",
    roles=frozenset({Role.TECHNICIAN}),
    tenants=frozenset({"north"}),
    default_tenant="north",
    rate_plan=RatePlan(10, 50),
)


def b64(data: dict[str, object] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, object], dict[str, object], str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "dicomvault",
        "aud": "dicomvault",
        "sub": "user:7",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "knd": "user",
        "name": "alice",
        "roles": ["technician"],
        "tenants": ["north"],
        "dt": "north",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_round_trip_keeps_the_principal() -> None:
    assert ISSUER.verify(ISSUER.issue(ALICE)) == ALICE


def test_alg_none_is_refused() -> None:
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(InvalidToken):
        ISSUER.verify(token)


def test_hs256_signed_with_a_public_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64({"alg": "HS256", "typ": "JWT"})
    body = b64(claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken):
        ISSUER.verify(f"{header}.{body}.{b64(signature)}")


def test_forged_kid_does_not_select_another_key() -> None:
    token = jwt.encode(
        claims(), "attacker-secret" * 4, algorithm="HS256", headers={"kid": "../../etc/passwd"}
    )
    with pytest.raises(InvalidToken):
        ISSUER.verify(token)


def test_stripped_signature_is_refused() -> None:
    header, body, _ = ISSUER.issue(ALICE).split(".")
    with pytest.raises(InvalidToken):
        ISSUER.verify(f"{header}.{body}.")


@pytest.mark.parametrize(
    "change",
    [
        {"roles": ["admin"]},
        {"tenants": ["north", "south"]},
        {"sub": "user:1"},
    ],
    ids=["role", "tenant", "subject"],
)
def test_edited_claims_break_the_signature(change: dict[str, object]) -> None:
    header, body, signature = ISSUER.issue(ALICE).split(".")
    _, payload, _ = parts(ISSUER.issue(ALICE))
    payload.update(change)
    with pytest.raises(InvalidToken):
        ISSUER.verify(f"{header}.{b64(payload)}.{signature}")


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": int(time.time()) - 60},
        {"nbf": int(time.time()) + 600},
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"exp": None},
        {"iat": None},
    ],
    ids=["expired", "nbf-future", "wrong-aud", "wrong-iss", "missing-exp", "missing-iat"],
)
def test_claims_that_fail_validation(bad: dict[str, object]) -> None:
    token = jwt.encode(claims(**bad), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        ISSUER.verify(token)


def test_a_token_of_another_secret_is_refused() -> None:
    other = TokenIssuer("x" * 48, "dicomvault", "dicomvault")
    with pytest.raises(InvalidToken):
        ISSUER.verify(other.issue(ALICE))


def test_malformed_role_claim_is_refused() -> None:
    token = jwt.encode(claims(roles=["superuser"]), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        ISSUER.verify(token)
