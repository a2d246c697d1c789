"""Revalidating the web UI's static assets: If-None-Match lists and weak tags get their 304.

In process (httpx's ASGI transport on the real application): the asset routes are public, so no
server or session is needed to check the conditional GET itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dicomvault.asgi import create_app
from dicomvault.bootstrap import build_services, prepare
from dicomvault.config import Settings
from dicomvault.web.rendering import assets


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path / "data")
    prepare(settings)
    services = build_services(settings)
    transport = httpx.ASGITransport(app=create_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://archive") as client:
            yield client
    finally:
        await services.close()


@pytest.mark.anyio
async def test_static_assets_revalidate_with_lists_and_weak_tags(http: httpx.AsyncClient) -> None:
    name = next(iter(assets()))
    first = await http.get(f"/static/{name}")
    assert first.status_code == 200
    etag = first.headers["etag"]
    for header in (etag, f'"a", {etag}', f"W/{etag}", f'"a", W/{etag}', "*"):
        again = await http.get(f"/static/{name}", headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b"" and again.headers["etag"] == etag
    stale = await http.get(f"/static/{name}", headers={"If-None-Match": '"a", "b"'})
    assert stale.status_code == 200
