"""Whose address a request is: proxy headers believed only from trusted proxies (unit tests).

The HTTP tests (allowlists, audit source addresses, failed-login limits) go through
X-Forwarded-For from 127.0.0.1; these cover the rules themselves, RFC 7239 ``Forwarded`` included,
and that only the one header the proxies are configured to write is ever read.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.datastructures import Headers

from dicomvault.api.security import resolve_client_address
from dicomvault.config import ForwardedHeader, Settings
from tests.api.support import API_ENV, Api, unique
from tests.support.server import running_server

TRUSTED = ["127.0.0.1", "10.0.0.0/8"]
XFF, FORWARDED = ForwardedHeader.X_FORWARDED_FOR, ForwardedHeader.FORWARDED


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # No trusted proxy in between: the peer, whatever the headers say.
        ("192.0.2.9", {"x-forwarded-for": "203.0.113.1"}, "192.0.2.9"),
        # From a trusted proxy: the rightmost hop that is not one of ours.
        ("127.0.0.1", {"x-forwarded-for": "203.0.113.1"}, "203.0.113.1"),
        ("127.0.0.1", {"x-forwarded-for": "198.51.100.7, 203.0.113.1, 10.1.1.1"}, "203.0.113.1"),
        ("127.0.0.1", {"x-forwarded-for": "10.1.1.1, 10.2.2.2"}, "127.0.0.1"),
        ("127.0.0.1", {"x-forwarded-for": "garbage, 203.0.113.1"}, "203.0.113.1"),
        ("127.0.0.1", {}, "127.0.0.1"),
        # The proxies write X-Forwarded-For: a Forwarded header is the client's own, ignored.
        ("127.0.0.1", {"forwarded": "for=203.0.113.1"}, "127.0.0.1"),
        (
            "127.0.0.1",
            {"x-forwarded-for": "203.0.113.5", "forwarded": "for=1.2.3.4"},
            "203.0.113.5",
        ),
        (None, {"x-forwarded-for": "203.0.113.1"}, None),
    ],
)
def test_x_forwarded_for(peer: str | None, headers: dict[str, str], expected: str | None) -> None:
    assert resolve_client_address(peer, Headers(headers), TRUSTED, XFF) == expected


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("192.0.2.9", {"forwarded": "for=203.0.113.1"}, "192.0.2.9"),
        # RFC 7239, with ports, quoting and IPv6 brackets.
        ("127.0.0.1", {"forwarded": "for=203.0.113.1;proto=https"}, "203.0.113.1"),
        ("127.0.0.1", {"forwarded": 'for="203.0.113.1:4711"'}, "203.0.113.1"),
        ("127.0.0.1", {"forwarded": 'for="[2001:db8::1]:4711", for=10.0.0.3'}, "2001:db8::1"),
        ("127.0.0.1", {"forwarded": "For=198.51.100.1, for=203.0.113.2"}, "203.0.113.2"),
        ("127.0.0.1", {"forwarded": "for=10.1.1.1"}, "127.0.0.1"),
        # The proxies write Forwarded: an X-Forwarded-For is the client's own, ignored — with
        # or without a Forwarded header next to it (never a fallback).
        (
            "127.0.0.1",
            {"x-forwarded-for": "203.0.113.66", "forwarded": "for=198.51.100.4"},
            "198.51.100.4",
        ),
        ("127.0.0.1", {"x-forwarded-for": "203.0.113.66"}, "127.0.0.1"),
    ],
)
def test_forwarded(peer: str | None, headers: dict[str, str], expected: str | None) -> None:
    assert resolve_client_address(peer, Headers(headers), TRUSTED, FORWARDED) == expected


def test_nothing_is_trusted_by_default() -> None:
    headers = Headers({"x-forwarded-for": "203.0.113.1", "forwarded": "for=203.0.113.2"})
    for header in ForwardedHeader:
        assert resolve_client_address("127.0.0.1", headers, [], header) == "127.0.0.1"
    assert Settings().trusted_proxies == []
    assert Settings().forwarded_header is XFF


def test_the_header_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMVAULT_FORWARDED_HEADER", "forwarded")
    assert Settings().forwarded_header is FORWARDED
    monkeypatch.setenv("DICOMVAULT_FORWARDED_HEADER", "x-real-ip")
    with pytest.raises(ValueError, match="forwarded"):
        Settings()


# -- over HTTP: a proxy that writes Forwarded and passes the client's X-Forwarded-For through ----
@pytest.fixture(scope="module")
def forwarded_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("forwarded") / "data"
    env = {**API_ENV, "DICOMVAULT_FORWARDED_HEADER": "forwarded"}
    with running_server(data, env=env) as server:
        api = Api(server)
        yield api
        api.close()


def test_a_client_cannot_choose_its_address_past_a_forwarded_proxy(forwarded_api: Api) -> None:
    """The audit trail's source address is the proxy's ``Forwarded: for=``, never the
    X-Forwarded-For the client wrote itself (which an IP allowlist or the failed-login limit
    would otherwise believe as well)."""
    api = forwarded_api
    spoofed = {"X-Forwarded-For": "10.20.30.40"}
    proxied = {"Forwarded": "for=198.51.100.23;proto=https"}
    sent = {
        unique("both"): {**spoofed, **proxied},
        unique("xff-only"): spoofed,
    }
    for correlation, headers in sent.items():
        response = api.http.get(
            "/dicom-web/studies",
            headers={**api.admin_headers, **headers, "X-Request-ID": correlation},
        )
        assert response.status_code == 200, response.text
    addresses = [[r["source_ip"] for r in api.audit_of(c)] for c in sent]
    assert addresses == [["198.51.100.23"], ["127.0.0.1"]]
