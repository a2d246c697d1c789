"""External identity providers: OIDC access/ID tokens validated against the provider's JWKS.

Only asymmetric algorithms are accepted (an HS256 token "signed" with the provider's public key
is refused), the issuer and audience must match a configured provider, and keys are looked up by
``kid`` in the provider's JWKS, which is fetched again when an unknown ``kid`` appears (rotation,
at most once per ``jwks_refresh_cooldown``) and every five minutes (withdrawn keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio.to_thread
import jwt
from jwt import PyJWKClient

from dicomvault.auth.principal import Principal, PrincipalKind, Role
from dicomvault.auth.tokens import REQUIRED_CLAIMS, InvalidToken
from dicomvault.config import OidcProvider

_ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}


class OidcVerifier:
    def __init__(self, providers: Sequence[OidcProvider]) -> None:
        self._providers = {p.issuer: p for p in providers}
        self._clients = {
            p.issuer: PyJWKClient(
                p.jwks_url,
                # No per-kid cache: it never expires, so a key the provider withdrew would be
                # trusted on. The JWK set itself is cached for ``lifespan`` seconds.
                cache_keys=False,
                lifespan=300,
                timeout=10,
                # Bounds how often forged kids can make us refetch the provider's JWKS.
                cooldown_duration=p.jwks_refresh_cooldown,
            )
            for p in providers
        }

    def handles(self, issuer: str) -> bool:
        return issuer in self._providers

    @property
    def configured(self) -> bool:
        return bool(self._providers)

    async def verify(self, token: str, issuer: str) -> Principal:
        provider = self._providers[issuer]
        algorithms = [a for a in provider.algorithms if a in _ASYMMETRIC]
        try:
            key = await anyio.to_thread.run_sync(
                self._clients[issuer].get_signing_key_from_jwt, token
            )
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=algorithms,
                audience=provider.audience,
                issuer=provider.issuer,
                options={"require": [c for c in REQUIRED_CLAIMS if c != "nbf"]},
                leeway=5,
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise InvalidToken(type(exc).__name__) from exc
        return principal_from_oidc(provider, claims)


def principal_from_oidc(provider: OidcProvider, claims: Mapping[str, Any]) -> Principal:
    """Map the provider's claims to roles and tenants (configured per provider).

    Roles always go through ``role_map`` (a provider's group names are not ours). Tenants go
    through ``tenant_map`` when one is configured, unmapped names dropped; without one the
    claim's names are the tenant names.
    """
    roles = set()
    for name in _names(_claim(claims, provider.roles_claim)):
        mapped = provider.role_map.get(name)
        if mapped in {r.value for r in Role}:
            roles.add(Role(mapped))
    tenants = frozenset(_tenants(provider, _names(_claim(claims, provider.tenants_claim))))
    if not tenants and provider.default_tenant:
        tenants = frozenset({provider.default_tenant})
    default = provider.default_tenant if provider.default_tenant in tenants else None
    return Principal(
        subject=f"oidc:{provider.issuer}#{claims['sub']}",
        kind=PrincipalKind.EXTERNAL,
        name=str(claims.get("preferred_username") or claims.get("email") or claims["sub"]),
        roles=frozenset(roles),
        tenants=tenants,
        default_tenant=default or (sorted(tenants)[0] if len(tenants) == 1 else None),
    )


def _tenants(provider: OidcProvider, names: list[str]) -> list[str]:
    if not provider.tenant_map:
        return names
    return [provider.tenant_map[n] for n in names if n in provider.tenant_map]


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    if path in claims:
        return claims[path]
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []
