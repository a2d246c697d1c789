"""Access tokens: short-lived JWTs (RFC 7519) signed by this server, HS256 pinned.

Verification pins the algorithm and requires exp, iat, nbf, iss, aud and sub, so ``alg: none``,
an HS256 token made with some public key, a stripped signature or an edited claim all fail.
A signature that verifies is not the end: ``AuthService.authenticate`` also checks the token
against the identity store (user disabled, deleted or changed, session logged out).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from dicomvault.auth.principal import Principal, PrincipalKind, RatePlan, Role

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub"]


class InvalidToken(Exception):
    """The token is not one this server accepts (the reason is for logs, not for clients)."""


@dataclass(frozen=True)
class TokenIssuer:
    secret: str
    issuer: str
    audience: str
    access_ttl: int = 900

    def issue(self, principal: Principal, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": principal.subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.access_ttl,
            "jti": secrets.token_urlsafe(12),
            "knd": principal.kind.value,
            "name": principal.name,
            "roles": sorted(r.value for r in principal.roles),
            "tenants": sorted(principal.tenants),
            "dt": principal.default_tenant,
        }
        if principal.scopes is not None:
            claims["scope"] = " ".join(sorted(principal.scopes))
        if principal.rate_plan is not None:
            claims["rp"] = [principal.rate_plan.rate, principal.rate_plan.burst]
        if principal.session_id is not None:
            claims["sid"] = principal.session_id
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, object]) -> Principal:
    try:
        roles = frozenset(Role(r) for r in _strings(claims.get("roles")))
        scope = claims.get("scope")
        plan = claims.get("rp")
        rate_plan = None
        if isinstance(plan, list) and len(plan) == 2:
            rate_plan = RatePlan(rate=float(plan[0]), burst=int(plan[1]))
        default_tenant = claims.get("dt")
        session = claims.get("sid")
        return Principal(
            subject=str(claims["sub"]),
            kind=PrincipalKind(str(claims.get("knd", PrincipalKind.USER.value))),
            name=str(claims.get("name", "")),
            roles=roles,
            tenants=frozenset(_strings(claims.get("tenants"))),
            default_tenant=str(default_tenant) if default_tenant else None,
            scopes=frozenset(str(scope).split()) if scope is not None else None,
            rate_plan=rate_plan,
            session_id=str(session) if session is not None else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidToken("malformed claims") from exc


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return value
