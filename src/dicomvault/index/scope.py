"""The tenant scope every repository call takes (DESIGN.md, security model).

Reads span ``tenants``; writes go to ``write_tenant``. The scope is applied inside ``index/`` so
no query can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    tenants: frozenset[str]
    write_tenant: str

    @classmethod
    def single(cls, tenant: str) -> Scope:
        return cls(tenants=frozenset({tenant}), write_tenant=tenant)

    def can_write(self) -> bool:
        return bool(self.write_tenant) and self.write_tenant in self.tenants
