"""Authentication: the OAuth2 grants (RFC 6749), bearer verification, the first admin.

A verified signature proves a token was issued here, not that it still should be honoured: every
request also checks the token's principal against the identity store — the user still exists, is
not disabled and has the roles and tenants the token claims; the login session (refresh-token
family) was not logged out or revoked; a partner client still exists and is called from an
address its allowlist admits. Lookups are cached for ``REVALIDATE_SECONDS`` per process and the
cache is dropped on every change made through this service, so a change is immediate on the
replica that made it and takes at most that long on the others.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

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


class AddressNotAllowed(Exception):
    """A partner client's valid token, presented from outside the client's IP allowlist."""


REVALIDATE_SECONDS = 2.0
_MAX_CACHED = 10_000
T = TypeVar("T")


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
        self._clock: Callable[[], float] = time.monotonic
        # key ("user:<pk>", "client:<id>", "sid:<family>") -> (valid until, looked-up value)
        self._cache: dict[str, tuple[float, object]] = {}

    # -- grants --------------------------------------------------------------------------------
    async def password_grant(self, username: str, password: str) -> Grant:
        user = await self.store.user_by_name(username)
        ok = verify_secret(user.password_hash if user else None, password)
        if user is None or not ok or user.disabled:
            raise OAuthError("invalid_grant", "invalid username or password")
        if needs_rehash(user.password_hash):
            await self.store.update_user(user.username, password_hash=hash_secret(password))
        family = uuid.uuid4().hex
        principal = replace(user_principal(user, self._default_plan()), session_id=family)
        refresh = await self._new_refresh_token(user.pk, family=family)
        return Grant(principal, self.issuer.issue(principal), self.issuer.access_ttl, refresh)

    async def refresh_grant(self, refresh_token: str) -> Grant:
        outcome, user_pk, family = await self.store.use_refresh_token(
            refresh_token, self.settings.refresh_reuse_grace
        )
        if outcome == RefreshOutcome.REUSED:
            self.forget()  # the family's access tokens die with it, on this replica at once
            raise RefreshTokenReused("invalid_grant", "refresh token already used")
        if outcome != RefreshOutcome.OK or user_pk is None or family is None:
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        user = await self.store.user_by_pk(user_pk)
        if user is None or user.disabled:
            await self.store.revoke_family(family)
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        principal = replace(user_principal(user, self._default_plan()), session_id=family)
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
        """End the session: the refresh token's family and the access token's session.

        Revoking the family revokes every refresh token of the login and, through the ``sid``
        claim, every access token issued in it; other sessions of the same user live on.
        """
        families: set[str] = set()
        if refresh_token:
            _outcome, _user_pk, family = await self.store.use_refresh_token(refresh_token)
            if family is not None:
                families.add(family)
        if principal is not None and principal.session_id is not None:
            families.add(principal.session_id)
        for family in sorted(families):
            await self.store.revoke_family(family)
        self.forget()

    # -- bearer tokens -------------------------------------------------------------------------
    async def authenticate(self, token: str, source_ip: str | None = None) -> Principal:
        """A local access token, or an external OIDC token from a configured provider.

        Raises ``InvalidToken`` (401) for a token that does not verify or no longer stands for a
        current identity, ``AddressNotAllowed`` (403) for a client outside its allowlist.
        """
        if self.oidc.configured:  # the unverified issuer only picks the verifier
            try:
                unverified = jwt.decode(token, options={"verify_signature": False})
            except jwt.PyJWTError as exc:
                raise InvalidToken("not a JWT") from exc
            issuer = unverified.get("iss") if isinstance(unverified, dict) else None
            if isinstance(issuer, str) and self.oidc.handles(issuer):
                return await self.oidc.verify(token, issuer)
        principal = self.issuer.verify(token)
        if principal.kind is PrincipalKind.USER:
            await self._check_user(principal)
        elif principal.kind is PrincipalKind.CLIENT:
            await self._check_client(principal, source_ip)
        else:  # our issuer never makes external principals: a token claiming one is forged
            raise InvalidToken("unexpected principal kind")
        return principal

    def forget(self) -> None:
        """Drop the revalidation cache (after any change to users, clients or sessions)."""
        self._cache.clear()

    async def _check_user(self, principal: Principal) -> None:
        pk = _subject_id(principal.subject, "user")
        if not pk.isdigit():
            raise InvalidToken("malformed subject")
        user = await self._cached(principal.subject, lambda: self.store.user_by_pk(int(pk)))
        if user is None or user.disabled:
            raise InvalidToken("user deleted or disabled")
        current = user_principal(user, self._default_plan())
        if not _same_grants(principal, current):
            raise InvalidToken("user's roles or tenants changed since the token was issued")
        session = principal.session_id
        if session is None:
            raise InvalidToken("user token without a session")
        if not await self._cached(f"sid:{session}", lambda: self.store.family_active(session)):
            raise InvalidToken("session ended (logout or revoked refresh token)")

    async def _check_client(self, principal: Principal, source_ip: str | None) -> None:
        client_id = _subject_id(principal.subject, "client")
        client = await self._cached(principal.subject, lambda: self.store.client_by_id(client_id))
        if client is None or client.disabled:
            raise InvalidToken("client deleted or disabled")
        current = client_principal(client, self._default_plan())
        if not _same_grants(principal, current):
            raise InvalidToken("client's roles or tenants changed since the token was issued")
        granted = current.scopes
        if granted is not None and (principal.scopes is None or not principal.scopes <= granted):
            raise InvalidToken("client's scopes narrowed since the token was issued")
        if not ip_allowed(client.allowed_ips, source_ip):
            raise AddressNotAllowed("client not allowed from this address")

    async def _cached(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]  # type: ignore[return-value]
        value = await load()
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (now + REVALIDATE_SECONDS, value)
        return value

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


def _subject_id(subject: str, kind: str) -> str:
    prefix, sep, rest = subject.partition(":")
    if prefix != kind or not sep or not rest:
        raise InvalidToken("malformed subject")
    return rest


def _same_grants(token: Principal, current: Principal) -> bool:
    """The token still says what the store says: roles, tenants, default tenant."""
    return (
        token.roles == current.roles
        and token.tenants == current.tenants
        and token.default_tenant == current.default_tenant
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
