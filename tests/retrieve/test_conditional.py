"""If-None-Match (RFC 9110 13.1.2): the one comparison behind every 304 of the server."""

from __future__ import annotations

import pytest

from dicomvault.retrieve.conditional import etag_matches


@pytest.mark.parametrize(
    "header",
    [
        '"b"',
        '"a", "b"',
        '"a","b"',
        'W/"b"',
        '"a", W/"b"',
        "*",
        '"a,b", "b"',  # a comma inside an opaque tag is not a separator
        "b",  # tolerated: an unquoted tag from a sloppy client
    ],
)
def test_matches(header: str) -> None:
    for current in ('"b"', "b", 'W/"b"'):
        assert etag_matches(header, current), (header, current)


@pytest.mark.parametrize(
    "header", [None, "", '"a"', '"a", "c"', 'W/"bb"', '"a,b"', '"B"', '""', 'W/"a"']
)
def test_does_not_match(header: str | None) -> None:
    assert not etag_matches(header, '"b"')
