"""Whose address a request is: proxy headers believed only from trusted proxies (unit tests).

The HTTP tests (allowlists, audit source addresses, failed-login limits) go through
X-Forwarded-For from 127.0.0.1; these cover the rules themselves, RFC 7239 ``Forwarded`` included.
"""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from dicomvault.api.security import resolve_client_address

TRUSTED = ["127.0.0.1", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # No trusted proxy in between: the peer, whatever the headers say.
        ("192.0.2.9", {"x-forwarded-for": "203.0.113.1"}, "192.0.2.9"),
        ("192.0.2.9", {"forwarded": "for=203.0.113.1"}, "192.0.2.9"),
        # From a trusted proxy: the rightmost hop that is not one of ours.
        ("127.0.0.1", {"x-forwarded-for": "203.0.113.1"}, "203.0.113.1"),
        ("127.0.0.1", {"x-forwarded-for": "198.51.100.7, 203.0.113.1, 10.1.1.1"}, "203.0.113.1"),
        ("127.0.0.1", {"x-forwarded-for": "10.1.1.1, 10.2.2.2"}, "127.0.0.1"),
        ("127.0.0.1", {"x-forwarded-for": "garbage, 203.0.113.1"}, "203.0.113.1"),
        ("127.0.0.1", {}, "127.0.0.1"),
        # RFC 7239, with ports, quoting and IPv6 brackets.
        ("127.0.0.1", {"forwarded": "for=203.0.113.1;proto=https"}, "203.0.113.1"),
        ("127.0.0.1", {"forwarded": 'for="203.0.113.1:4711"'}, "203.0.113.1"),
        ("127.0.0.1", {"forwarded": 'for="[2001:db8::1]:4711", for=10.0.0.3'}, "2001:db8::1"),
        ("127.0.0.1", {"forwarded": "For=198.51.100.1, for=203.0.113.2"}, "203.0.113.2"),
        # X-Forwarded-For wins when both are present.
        (
            "127.0.0.1",
            {"x-forwarded-for": "203.0.113.5", "forwarded": "for=1.2.3.4"},
            "203.0.113.5",
        ),
        (None, {"x-forwarded-for": "203.0.113.1"}, None),
    ],
)
def test_resolve_client_address(
    peer: str | None, headers: dict[str, str], expected: str | None
) -> None:
    assert resolve_client_address(peer, Headers(headers), TRUSTED) == expected


def test_nothing_is_trusted_by_default() -> None:
    headers = Headers({"x-forwarded-for": "203.0.113.1"})
    assert resolve_client_address("127.0.0.1", headers, []) == "127.0.0.1"
