"""Authentication: the OAuth2 grants (RFC 6749), bearer verification, the first admin."""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import jwt

from dicomvault.auth.oidc import OidcVerifier
from dicomvault.auth.passwords import hash_secret, needs_rehash, verify_secret
from dicomvault.auth.principal import Principal, PrincipalKind, RatePlan, Role
from dicomvault.auth.store import ClientRecord, IdentityStore, RefreshOutcome, UserRecord
from dicomvault.auth.tokens import InvalidToken, TokenIssuer
from dicomvault.config import Settings


class OAuthError(Exception):
    """An RFC 6749 5.2 error: ``error`` is the registered code, ``status`` the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class RefreshTokenReused(OAuthError):
    """A rotated-out refresh token was presented: its family is now revoked (security alert)."""


@dataclass(frozen=True)
class Grant:
    principal: Principal
    access_token: str
    expires_in: int
    refresh_token: str | None = None


class AuthService:
    def __init__(
        self,
        settings: Settings,
        store: IdentityStore,
        issuer: TokenIssuer,
        oidc: OidcVerifier,
    ) -> None:
        self.settings = settings
        self.store = store
        self.issuer = issuer
        self.oidc = oidc

    # -- grants --------------------------------------------------------------------------------
    async def password_grant(self, username: str, password: str) -> Grant:
        user = await self.store.user_by_name(username)
        ok = verify_secret(user.password_hash if user else None, password)
        if user is None or not ok or user.disabled:
            raise OAuthError("invalid_grant", "invalid username or password")
        if needs_rehash(user.password_hash):
            await self.store.update_user(user.username, password_hash=hash_secret(password))
        principal = user_principal(user, self._default_plan())
        refresh = await self._new_refresh_token(user.pk, family=uuid.uuid4().hex)
        return Grant(principal, self.issuer.issue(principal), self.issuer.access_ttl, refresh)

    async def refresh_grant(self, refresh_token: str) -> Grant:
        outcome, user_pk, family = await self.store.use_refresh_token(refresh_token)
        if outcome == RefreshOutcome.REUSED:
            raise RefreshTokenReused("invalid_grant", "refresh token already used")
        if outcome != RefreshOutcome.OK or user_pk is None or family is None:
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        user = await self.store.user_by_pk(user_pk)
        if user is None or user.disabled:
            await self.store.revoke_family(family)
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        principal = user_principal(user, self._default_plan())
        new_refresh = await self._new_refresh_token(user.pk, family=family)
        return Grant(principal, self.issuer.issue(principal), self.issuer.access_ttl, new_refresh)

    async def client_credentials_grant(
        self, client_id: str, client_secret: str, scope: str | None, source_ip: str | None
    ) -> Grant:
        client = await self.store.client_by_id(client_id)
        ok = verify_secret(client.secret_hash if client else None, client_secret)
        if client is None or not ok or client.disabled:
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        if not ip_allowed(client.allowed_ips, source_ip):
            raise OAuthError("invalid_client", "client not allowed from this address", status=401)
        principal = client_principal(client, self._default_plan())
        if scope:
            requested = frozenset(scope.split())
            granted = principal.scopes
            if granted is not None and not requested <= granted:
                raise OAuthError("invalid_scope", "scope exceeds what the client was granted")
            principal = _with_scopes(principal, requested)
        return Grant(principal, self.issuer.issue(principal), self.issuer.access_ttl)

    async def logout(self, refresh_token: str | None, principal: Principal | None) -> None:
        if refresh_token:
            _outcome, _user_pk, family = await self.store.use_refresh_token(refresh_token)
            if family is not None:
                await self.store.revoke_family(family)
        if principal is not None and principal.kind is PrincipalKind.USER:
            await self.store.revoke_user_tokens(int(principal.subject.split(":", 1)[1]))

    # -- bearer tokens -------------------------------------------------------------------------
    async def authenticate(self, token: str) -> Principal:
        """A local access token, or an external OIDC token from a configured provider."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken("not a JWT") from exc
        issuer = unverified.get("iss") if isinstance(unverified, dict) else None
        if isinstance(issuer, str) and self.oidc.handles(issuer):
            return await self.oidc.verify(token, issuer)
        return self.issuer.verify(token)

    # -- first start ---------------------------------------------------------------------------
    async def ensure_first_admin(self) -> str | None:
        """Create user ``admin`` on first start; return its password if one was generated."""
        await self.store.ensure_tenant(self.settings.default_tenant)
        if await self.store.user_by_name("admin") is not None:
            return None
        password = self.settings.admin_password or secrets.token_urlsafe(18)
        await self.store.create_user(
            "admin",
            hash_secret(password),
            [Role.ADMIN.value],
            [self.settings.default_tenant],
            self.settings.default_tenant,
        )
        return None if self.settings.admin_password else password

    def _default_plan(self) -> RatePlan:
        return RatePlan(self.settings.rate_limit_rate, self.settings.rate_limit_burst)

    async def _new_refresh_token(self, user_pk: int, family: str) -> str:
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl)
        await self.store.add_refresh_token(token, family, user_pk, expires)
        return token


def user_principal(user: UserRecord, plan: RatePlan) -> Principal:
    return Principal(
        subject=f"user:{user.pk}",
        kind=PrincipalKind.USER,
        name=user.username,
        roles=frozenset(Role(r) for r in user.roles if r in {x.value for x in Role}),
        tenants=frozenset(user.tenants),
        default_tenant=user.default_tenant,
        rate_plan=plan,
    )


def client_principal(client: ClientRecord, default: RatePlan) -> Principal:
    plan = RatePlan(client.rate or default.rate, client.burst or default.burst)
    return Principal(
        subject=f"client:{client.client_id}",
        kind=PrincipalKind.CLIENT,
        name=client.name,
        roles=frozenset(Role(r) for r in client.roles if r in {x.value for x in Role}),
        tenants=frozenset(client.tenants),
        default_tenant=client.default_tenant,
        scopes=frozenset(client.scopes) if client.scopes is not None else None,
        rate_plan=plan,
    )


def _with_scopes(principal: Principal, scopes: frozenset[str]) -> Principal:
    return replace(principal, scopes=scopes)


def ip_allowed(allowed: list[str] | None, source_ip: str | None) -> bool:
    """RFC 4632 CIDR allowlist; no list means any address."""
    if allowed is None:
        return True
    if source_ip is None:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in allowed)
