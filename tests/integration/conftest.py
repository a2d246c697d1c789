"""Integration fixtures: one real server per module (fast), fresh data per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import LiveServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("server") / "data"
    with running_server(data) as live:
        yield live
