"""The access log keeps only path segments known to be harmless: route words, numbers, tags."""

from __future__ import annotations

from typing import Any

import pytest

from dicomvault.observability.access_log import REDACTED, AccessLogMiddleware


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


class _Route:
    def __init__(self, path: str) -> None:
        self.path = path


class _App:
    routes = [_Route("/dicom-web/studies/{study}/series/{series}")]


def loggable(path: str) -> str:
    return AccessLogMiddleware(_app).loggable_path({"path": path, "app": _App()})


def test_route_words_uids_and_tags_are_kept() -> None:
    assert loggable("/dicom-web/studies/1.2.3/series/00100020") == (
        "/dicom-web/studies/1.2.3/series/00100020"
    )


@pytest.mark.parametrize(
    "segment", ["SMITH^JOHN", "1.2.3\n", "0010002\n0", "00100020\n", "1.2.3 x", "studiesX"]
)
def test_anything_else_is_redacted(segment: str) -> None:
    assert loggable(f"/dicom-web/studies/{segment}") == f"/dicom-web/studies/{REDACTED}"
