"""Conditional GET (RFC 9110 13.1.2): does the client's ``If-None-Match`` name what we would send?

The one comparison behind every 304 of the server: rendered images and thumbnails (api/), the
OHIF build under /viewer and the web UI's static assets (web/). It lives here, below both,
because revalidating what was retrieved is part of retrieve/'s cache (DESIGN.md, "Retrieve").
"""

from __future__ import annotations

import re

# One member of the header's list: ``*``, an entity-tag (``"…"`` or weak ``W/"…"``; its opaque
# part may hold commas), or — tolerated from sloppy clients — an unquoted token.
_MEMBER = re.compile(r'\*|(?:W/)?"([^"]*)"|[^\s,"]+')


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` (quoted, weak or bare): a 304 is due.

    RFC 9110 13.1.2: the header is ``*`` or a comma-separated list of entity-tags, compared
    with the weak comparison (8.8.3.2) — ``W/"x"`` matches ``"x"`` — so a cache that stored
    several variants, or weakened our tag, still gets its 304.
    """
    if not if_none_match:
        return False
    current = _opaque(etag)
    for member in _MEMBER.finditer(if_none_match):
        text = member.group(0)
        if text == "*":
            return True
        quoted = member.group(1)
        if (quoted if quoted is not None else text) == current:
            return True
    return False


def _opaque(etag: str) -> str:
    """The opaque part of an entity-tag: without ``W/`` and the double quotes."""
    tag = etag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        return tag[1:-1]
    return tag
