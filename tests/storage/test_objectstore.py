"""``ObjectBlobStore.from_url``: the settings string an operator writes for the S3 store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dicomvault.storage import ObjectBlobStore
from tests.support.moto_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3


def test_from_url_reads_bucket_prefix_endpoint_and_credentials() -> None:
    blobs = ObjectBlobStore.from_url(
        "s3://archive-bucket/site/a/?endpoint=http://127.0.0.1:9000&region=eu-west-1"
        "&allow_http=true&access_key_id=AK&secret_access_key=SK"
    )

    config = blobs.store.config
    assert config["bucket"] == "archive-bucket"
    assert blobs.store.prefix == "site/a"
    assert config["endpoint"] == "http://127.0.0.1:9000"
    assert config["region"] == "eu-west-1"
    assert config["access_key_id"] == "AK"
    assert blobs.store.client_options is not None
    assert str(blobs.store.client_options["allow_http"]).lower() == "true"


def test_from_url_without_prefix() -> None:
    assert ObjectBlobStore.from_url("s3://archive-bucket").store.prefix is None


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket?endpoint_url=http://x",  # typo: must fail at start-up
        "gs://bucket/prefix",
        "file:///var/lib/dicomvault",
        "s3:///no-bucket",
    ],
)
def test_from_url_refuses_what_it_does_not_understand(url: str) -> None:
    with pytest.raises(ValueError):
        ObjectBlobStore.from_url(url)


@pytest.mark.s3
@pytest.mark.anyio
async def test_credentials_come_from_the_aws_environment(
    moto_s3: MotoS3,
    monkeypatch: pytest.MonkeyPatch,
    spool: Callable[[bytes], Path],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    bucket = moto_s3.create_bucket()
    blobs = ObjectBlobStore.from_url(
        f"s3://{bucket}?endpoint={moto_s3.endpoint}&region={REGION}&allow_http=true"
    )

    await blobs.put_file("t/x.dcm", spool(b"from env"))

    assert await blobs.read_range("t/x.dcm", 5, 8) == b"env"
