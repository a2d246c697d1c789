"""Administration API: tenants (facilities), users, partner clients. Admin role only."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from dicomvault.api.deps import ServicesDep
from dicomvault.auth.passwords import hash_secret
from dicomvault.auth.principal import Role
from dicomvault.auth.store import ClientRecord, UserRecord
from dicomvault.bootstrap import Services
from dicomvault.config import TENANT_NAME_PATTERN
from dicomvault.errors import BadRequest, NotFound

router = APIRouter(prefix="/api/v1", tags=["admin"])


class TenantIn(BaseModel):
    name: str = Field(pattern=TENANT_NAME_PATTERN, description="Short, URL-safe facility name")
    display_name: str = ""


class TenantOut(BaseModel):
    name: str
    display_name: str


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str = Field(min_length=8, max_length=1024)
    roles: list[Role] = Field(min_length=1)
    tenants: list[str] = Field(default_factory=list)
    default_tenant: str | None = None


class UserPatch(BaseModel):
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    roles: list[Role] | None = None
    tenants: list[str] | None = None
    default_tenant: str | None = None
    disabled: bool | None = None


class UserOut(BaseModel):
    username: str
    roles: list[str]
    tenants: list[str]
    default_tenant: str | None
    disabled: bool

    @classmethod
    def of(cls, user: UserRecord) -> UserOut:
        return cls(
            username=user.username,
            roles=user.roles,
            tenants=user.tenants,
            default_tenant=user.default_tenant,
            disabled=user.disabled,
        )


class ClientIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(default_factory=lambda: [Role.PARTNER])
    tenants: list[str] = Field(min_length=1)
    default_tenant: str | None = None
    scopes: list[str] | None = Field(
        default=None, description="OAuth2 scopes, e.g. dicom.search dicom.retrieve dicom.store"
    )
    allowed_ips: list[str] | None = Field(default=None, description="CIDR allowlist")
    rate: float | None = Field(default=None, gt=0, description="Requests per second")
    burst: int | None = Field(default=None, ge=1)

    @field_validator("allowed_ips")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return [str(ipaddress.ip_network(v, strict=False)) for v in value]
        except ValueError as exc:
            raise ValueError(f"not a CIDR: {exc}") from exc


class ClientOut(BaseModel):
    client_id: str
    name: str
    roles: list[str]
    tenants: list[str]
    default_tenant: str | None
    scopes: list[str] | None
    allowed_ips: list[str] | None
    rate: float | None
    burst: int | None

    @classmethod
    def of(cls, c: ClientRecord) -> ClientOut:
        return cls(
            client_id=c.client_id,
            name=c.name,
            roles=c.roles,
            tenants=c.tenants,
            default_tenant=c.default_tenant,
            scopes=c.scopes,
            allowed_ips=c.allowed_ips,
            rate=c.rate,
            burst=c.burst,
        )


class ClientCreated(ClientOut):
    client_secret: str = Field(description="Shown once; only its hash is kept")


async def _check_tenants(services: Services, tenants: list[str], default: str | None) -> None:
    if not await services.identities.tenants_exist(tenants):
        raise BadRequest("unknown tenant")
    if default is not None and default not in tenants:
        raise BadRequest("default_tenant must be one of tenants")


def _default(tenants: list[str], default: str | None) -> str | None:
    return default or (tenants[0] if len(tenants) == 1 else None)


@router.get("/tenants", response_model=list[TenantOut], summary="List tenants")
async def list_tenants(services: ServicesDep) -> list[TenantOut]:
    return [TenantOut(name=n, display_name=d) for n, d in await services.identities.list_tenants()]


@router.post("/tenants", response_model=TenantOut, status_code=201, summary="Create a tenant")
async def create_tenant(body: TenantIn, services: ServicesDep) -> TenantOut:
    await services.identities.create_tenant(body.name, body.display_name)
    return TenantOut(name=body.name, display_name=body.display_name)


@router.get("/users", response_model=list[UserOut], summary="List users")
async def list_users(services: ServicesDep) -> list[UserOut]:
    return [UserOut.of(u) for u in await services.identities.list_users()]


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a user")
async def create_user(body: UserIn, services: ServicesDep) -> UserOut:
    await _check_tenants(services, body.tenants, body.default_tenant)
    user = await services.identities.create_user(
        body.username,
        hash_secret(body.password),
        [r.value for r in body.roles],
        body.tenants,
        _default(body.tenants, body.default_tenant),
    )
    return UserOut.of(user)


@router.get("/users/{username}", response_model=UserOut, summary="One user")
async def get_user(username: str, services: ServicesDep) -> UserOut:
    user = await services.identities.user_by_name(username)
    if user is None:
        raise NotFound("no such user")
    return UserOut.of(user)


@router.patch("/users/{username}", response_model=UserOut, summary="Change a user")
async def patch_user(username: str, body: UserPatch, services: ServicesDep) -> UserOut:
    current = await services.identities.user_by_name(username)
    if current is None:
        raise NotFound("no such user")
    tenants = body.tenants if body.tenants is not None else current.tenants
    default = body.default_tenant if body.default_tenant is not None else current.default_tenant
    if default not in tenants:
        default = _default(tenants, None)
    await _check_tenants(services, tenants, default)
    changes: dict[str, Any] = {
        "roles": [r.value for r in body.roles] if body.roles is not None else None,
        "tenants": body.tenants,
        "default_tenant": default,
        "disabled": body.disabled,
        "password_hash": hash_secret(body.password) if body.password else None,
    }
    user = await services.identities.update_user(username, **changes)
    if body.password or body.disabled or body.roles is not None:
        await services.identities.revoke_user_tokens(user.pk)
    # Access tokens already issued are checked against the store on every request: a changed
    # role or tenant, or a disabled user, ends them now (api/security.py, auth/service.py).
    services.auth.forget()
    return UserOut.of(user)


@router.delete("/users/{username}", status_code=204, summary="Delete a user")
async def delete_user(username: str, services: ServicesDep) -> None:
    await services.identities.delete_user(username)
    services.auth.forget()


@router.get("/clients", response_model=list[ClientOut], summary="List partner clients")
async def list_clients(services: ServicesDep) -> list[ClientOut]:
    return [ClientOut.of(c) for c in await services.identities.list_clients()]


@router.post(
    "/clients",
    response_model=ClientCreated,
    status_code=201,
    summary="Register a partner client (OAuth2 client credentials)",
    description="The client secret is in this answer only; keep it, it cannot be shown again.",
)
async def create_client(body: ClientIn, request: Request, services: ServicesDep) -> ClientCreated:
    await _check_tenants(services, body.tenants, body.default_tenant)
    secret = secrets.token_urlsafe(32)
    record = ClientRecord(
        pk=0,
        client_id="dv-" + secrets.token_hex(8),
        name=body.name,
        secret_hash=hash_secret(secret),
        roles=[r.value for r in body.roles],
        tenants=body.tenants,
        default_tenant=_default(body.tenants, body.default_tenant),
        scopes=body.scopes,
        allowed_ips=body.allowed_ips,
        rate=body.rate,
        burst=body.burst,
        disabled=False,
    )
    await services.identities.create_client(record)
    return ClientCreated(**ClientOut.of(record).model_dump(), client_secret=secret)


@router.delete("/clients/{client_id}", status_code=204, summary="Remove a partner client")
async def delete_client(client_id: str, services: ServicesDep) -> None:
    await services.identities.delete_client(client_id)
    services.auth.forget()
