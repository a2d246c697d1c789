"""Who is calling, and what each role may do (DESIGN.md, security model).

The role grants are the one declared table; routes and DIMSE services declare the ``Action`` they
need (``auth/permissions.py``), never a role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    RADIOLOGIST = "radiologist"
    TECHNICIAN = "technician"
    PARTNER = "partner"
    AUDITOR = "auditor"


class Action(StrEnum):
    SEARCH = "search"  # QIDO-RS, C-FIND, worklist
    RETRIEVE = "retrieve"  # WADO-RS, rendered, C-MOVE/C-GET
    STORE = "store"  # STOW-RS, C-STORE, uploads
    DELETE = "delete"
    ADMIN = "admin"  # users, clients, tenants, jobs
    AUDIT = "audit"  # read and export the audit trail


ROLE_GRANTS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.RADIOLOGIST: frozenset({Action.SEARCH, Action.RETRIEVE, Action.STORE}),
    Role.TECHNICIAN: frozenset({Action.SEARCH, Action.RETRIEVE, Action.STORE}),
    Role.PARTNER: frozenset({Action.SEARCH, Action.RETRIEVE, Action.STORE}),
    Role.AUDITOR: frozenset({Action.AUDIT}),
}

# The DIMSE services (PS3.7) and the action each needs; C-ECHO needs only an association.
DIMSE_SERVICE_ACTIONS: dict[str, Action | None] = {
    "C-ECHO": None,
    "C-STORE": Action.STORE,
    "C-FIND": Action.SEARCH,
    "C-MOVE": Action.RETRIEVE,
    "C-GET": Action.RETRIEVE,
}

# OAuth2 scopes a partner client can be narrowed to (RFC 6749 3.3).
SCOPE_FOR_ACTION: dict[Action, str] = {
    Action.SEARCH: "dicom.search",
    Action.RETRIEVE: "dicom.retrieve",
    Action.STORE: "dicom.store",
    Action.DELETE: "dicom.delete",
    Action.ADMIN: "admin",
    Action.AUDIT: "audit",
}


class PrincipalKind(StrEnum):
    USER = "user"
    CLIENT = "client"  # OAuth2 client credentials (partner systems)
    EXTERNAL = "external"  # OIDC token of an external identity provider


@dataclass(frozen=True)
class RatePlan:
    """GCRA parameters: sustained requests per second and the burst allowed on top."""

    rate: float = 10.0
    burst: int = 50


@dataclass(frozen=True)
class Principal:
    subject: str  # stable id: "user:<id>", "client:<client_id>", "oidc:<iss>#<sub>"
    kind: PrincipalKind
    name: str  # username / client name, for audit records (never patient data)
    roles: frozenset[Role]
    tenants: frozenset[str]
    default_tenant: str | None = None
    # None: not narrowed. Otherwise the OAuth2 scopes the client was granted.
    scopes: frozenset[str] | None = None
    rate_plan: RatePlan | None = None
    # The refresh-token family a user's access token belongs to: logging out (or reuse of a
    # rotated refresh token) revokes the family, and with it every access token of the session.
    session_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def may(self, action: Action) -> bool:
        """Role grants, narrowed by the client's scopes where it has any (default: deny)."""
        granted = any(action in ROLE_GRANTS.get(role, frozenset()) for role in self.roles)
        if not granted:
            return False
        return self.scopes is None or SCOPE_FOR_ACTION[action] in self.scopes

    @property
    def primary_role(self) -> str:
        order = list(Role)
        return min(self.roles, key=order.index).value if self.roles else ""
