"""Typed settings: the only place defaults live (DESIGN.md, config.py).

Built once by the CLI (or a test) and passed down; never imported as a global.
Every field can be set as ``DICOMVAULT_<NAME>`` in the environment.
"""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The OHIF Viewer release served at /viewer; scripts/ohif-viewer.json pins the same version with
# its tarball's integrity, and scripts/install.sh unpacks it under the Python environment.
OHIF_VERSION = "3.13.2"

# A tenant (facility) name: short and URL-safe, because it is a path segment
# (/tenants/{tenant}/dicom-web), the first part of every blob key, a Redis channel suffix and a
# log field. Every layer checks names against this one pattern (is_valid_tenant_name).
TENANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)


def is_valid_tenant_name(name: object) -> bool:
    """Whether ``name`` is a well-formed tenant name (letters, digits, ``_``, ``-``; at most 64,
    starting with a letter or digit). Says nothing about whether such a tenant exists."""
    return isinstance(name, str) and _TENANT_NAME.fullmatch(name) is not None


class DuplicatePolicy(StrEnum):
    """What STOW/C-STORE do with different bytes under an existing SOP Instance UID."""

    REJECT = "reject"
    REPLACE = "replace"


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ForwardedHeader(StrEnum):
    """The one header the trusted proxies write the client's address into."""

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"  # RFC 7239


class OidcProvider(BaseModel):
    """An external identity provider whose JWTs are accepted (Keycloak, Cognito, Entra ID)."""

    issuer: str
    audience: str
    jwks_url: str
    # Claim holding role names (a list, or a space/comma-separated string); dotted paths reach
    # into objects, e.g. "realm_access.roles" for Keycloak, "cognito:groups" for Cognito.
    roles_claim: str = "roles"
    tenants_claim: str = "tenants"
    # Provider role/group name -> dicomvault role; unmapped names are ignored.
    role_map: dict[str, str] = Field(default_factory=dict)
    # Provider tenant/group name -> dicomvault tenant. Empty: tenant names are taken as they are;
    # otherwise unmapped names are ignored.
    tenant_map: dict[str, str] = Field(default_factory=dict)
    default_tenant: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256"])
    # An unknown ``kid`` refetches the JWKS (key rotation), at most once per this many seconds.
    jwks_refresh_cooldown: float = Field(default=10.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DICOMVAULT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    # Empty means "derive from data_dir": sqlite under data_dir, blobs under data_dir/blobs.
    database_url: str = ""
    storage_url: str = ""
    # Absolute URL under which /dicom-web is reachable from clients; BulkDataURIs are built from it,
    # never from the Host header. Empty means http://{host}:{port}.
    public_base_url: str = ""
    max_instance_bytes: int = Field(default=500 * 1024 * 1024, ge=1024)
    # A STOW request may carry many instances; this caps the whole body.
    max_request_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1024)
    # Deflated Explicit VR Little Endian bodies inflate at most to this many bytes.
    max_inflated_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_sequence_depth: int = Field(default=32, ge=1)
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REJECT
    # Binary values larger than this are sent as BulkDataURI in /metadata (PS3.18 F.2.2).
    bulk_data_threshold: int = Field(default=1024, ge=0)
    cors_origins: list[str] = Field(default_factory=list)
    default_tenant: str = "default"
    qido_default_limit: int = Field(default=1000, ge=1)
    qido_max_limit: int = Field(default=10000, ge=1)
    log_level: str = "info"
    # Workers for `dicomvault import`.
    import_workers: int = Field(default=4, ge=1)

    # -- identity and access (DESIGN.md, security model) --------------------------------------
    mode: Mode = Mode.PRODUCTION
    # Empty: a random secret is made on first start and kept in data_dir (mode 0600).
    jwt_secret: str = ""
    jwt_issuer: str = "dicomvault"
    jwt_audience: str = "dicomvault"
    access_token_ttl: int = Field(default=900, ge=30)
    refresh_token_ttl: int = Field(default=14 * 24 * 3600, ge=60)
    # Seconds after a refresh token's first use in which it is accepted again (and rotated each
    # time) as the same client renewing (two browser tabs at one instant, a retry after a lost
    # answer) instead of being taken for a stolen copy, which revokes the session (the "grace
    # period" of Okta, the "reuse interval" of Auth0). 0: any second use revokes.
    refresh_reuse_grace: float = Field(default=20.0, ge=0, le=300)
    # The first start creates user "admin" with this password, or a random one printed once.
    admin_password: str | None = None
    oidc_providers: list[OidcProvider] = Field(default_factory=list)
    # Browser sessions: Secure cookies unless explicitly served over plain HTTP in development.
    cookie_secure: bool = True
    # Rate limits per principal (GCRA): sustained requests/s and burst.
    rate_limit_rate: float = Field(default=10.0, gt=0)
    rate_limit_burst: int = Field(default=50, ge=1)
    # Failed logins per username and per source address: a slow trickle only.
    login_rate: float = Field(default=0.2, gt=0)
    login_burst: int = Field(default=10, ge=1)
    # Redis for rate-limit counters, cache and live events shared across replicas.
    redis_url: str = ""
    # Addresses of reverse proxies whose forwarding header is believed (none by default).
    trusted_proxies: list[str] = Field(default_factory=list)
    # The header those proxies write: only that one is read, the other is ignored (a proxy
    # passes through what it does not write itself, so the client could choose its address).
    forwarded_header: ForwardedHeader = ForwardedHeader.X_FORWARDED_FOR

    # -- rendered images and thumbnails (PS3.18 10.4.1.1.4, docs/dicomweb.md) ------------------
    # Samples one decoded frame may have (Rows x Columns x Samples per Pixel); larger images are
    # refused with 422 before anything is decoded. 32 Mi samples: a 5,792-pixel square
    # grayscale frame, about 64 MiB decoded at 16 bits.
    max_render_pixels: int = Field(default=32 * 1024 * 1024, ge=4096)
    # Frames one rendered response may decode (study/series multipart, animated GIF).
    max_rendered_frames: int = Field(default=1000, ge=1)
    # Samples one rendered response may hold in all (frames x output width x height x 1 for
    # grayscale or 3 for colour), checked from the index before anything is read or decoded:
    # it bounds the work of a study/series multipart and the size of an animated GIF. 1 Gi: a
    # 1000-slice 512 x 512 CT study four times over, or a 1000-frame 640 x 480 colour cine.
    max_rendered_response_pixels: int = Field(default=1024 * 1024 * 1024, ge=4096)
    # Frames decoded at the same time by one process: bounds memory and CPU.
    render_concurrency: int = Field(default=2, ge=1)
    # In-process cache of rendered images (LRU), in bytes; with redis_url the cache is in Redis
    # and entries live render_cache_ttl seconds.
    render_cache_bytes: int = Field(default=128 * 1024 * 1024, ge=0)
    render_cache_ttl: int = Field(default=24 * 3600, ge=1)

    # -- live events and the web UI (docs/web-ui.md) ------------------------------------------
    # Events waiting for one live-event subscriber; one that falls further behind is dropped
    # (its browser reconnects and re-queries).
    live_queue_size: int = Field(default=256, ge=1)
    # A comment line on a quiet event stream, so proxies keep it open and dead clients show.
    live_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # An event stream ends after this long and the browser reconnects (SSE `retry:`); it bounds
    # how long a graceful shutdown waits for open streams.
    live_stream_seconds: float = Field(default=60.0, gt=0)

    # -- the browser layer (web/) ---------------------------------------------------------------
    # The prebuilt OHIF Viewer (npm @ohif/app dist/) served at /viewer; scripts/install.sh puts it
    # here. Missing: the server still starts and /viewer answers 503 saying how to install it.
    viewer_dir: Path = Path(sys.prefix) / "share" / "ohif" / OHIF_VERSION

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def effective_database_url(self) -> str:
        return (
            self.database_url
            or f"sqlite+aiosqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"
        )

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'blobs').resolve()}"

    @property
    def effective_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def dicomweb_base(self, root_path: str = "", tenant: str | None = None) -> str:
        """The public base of DICOMweb that RetrieveURLs and BulkDataURIs are built on: the
        configured base URL and the ASGI ``root_path``, never the Host header.

        With ``tenant`` (a request under ``/tenants/{tenant}/dicom-web``) the prefix is kept, so
        the URLs lead back into exactly that tenant.
        """
        prefix = f"/tenants/{quote(tenant, safe='')}/dicom-web" if tenant else "/dicom-web"
        return f"{self.effective_public_base_url}{root_path}{prefix}"
