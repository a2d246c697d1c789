"""moto's standalone S3 server on a free 127.0.0.1 port, spoken to over real HTTP.

Tests of the S3 protocol go through a real socket (obstore's Rust HTTP client cannot be patched
in process anyway), so what they prove holds for any S3-compatible service. moto keeps its state
in process-wide backends: servers started in one test session share buckets, hence
``create_bucket`` with a fresh name per test rather than a fresh server.

Usage, in a suite's ``conftest.py``::

    @pytest.fixture(scope="session")
    def moto_s3() -> Iterator[MotoS3]:
        with running_moto_s3() as server:
            yield server

    store = ObjectBlobStore.from_url(moto_s3.url(prefix="archive"))
"""

from __future__ import annotations

import logging
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

from moto.server import ThreadedMotoServer

# moto accepts any credentials; obstore insists on having some to sign requests with.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # moto's documented dummy credential, not a secret
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server: its endpoint and the bucket made for the caller."""

    endpoint: str
    bucket: str

    def url(self, prefix: str = "", bucket: str | None = None) -> str:
        """An ``s3://`` URL for ``ObjectBlobStore.from_url`` pointing at this server."""
        query = urlencode(
            {
                "endpoint": self.endpoint,
                "region": REGION,
                "allow_http": "true",
                "access_key_id": ACCESS_KEY_ID,
                "secret_access_key": SECRET_ACCESS_KEY,
            }
        )
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3://{bucket or self.bucket}{path}?{query}"

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:20]}"
        # moto does not check signatures, so a plain unsigned PUT Bucket (path style) will do.
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise RuntimeError(f"moto refused to create bucket {name}: {response.status}")
        return name


@contextmanager
def running_moto_s3(bucket: str = "dicomvault-test") -> Iterator[MotoS3]:
    """Start moto's S3 server on a free port, create ``bucket``, yield it; stop on exit."""
    # werkzeug would otherwise print one access-log line per S3 request to stderr.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        moto = MotoS3(endpoint=f"http://{host}:{port}", bucket=bucket)
        moto.create_bucket(bucket)
        yield moto
    finally:
        server.stop()
