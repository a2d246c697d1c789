"""One real server for the access-control suite (most modules share it), signed in as admin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.support import API_ENV, Api
from tests.support.server import LiveServer, running_server


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("api") / "data"
    with running_server(data, env=API_ENV) as server:
        yield server


@pytest.fixture(scope="session")
def api(live: LiveServer) -> Iterator[Api]:
    client = Api(live)
    yield client
    client.close()
