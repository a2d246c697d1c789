"""The web UI builds DICOMweb URLs exactly as the DICOMweb API does (one function for both)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.requests import Request

from dicomvault.api.dicomweb import base_url
from dicomvault.config import Settings
from dicomvault.web.context import dicomweb_base

SETTINGS = Settings(public_base_url="https://pacs.example.org/")


def request_for(root_path: str, tenant: str | None) -> Request:
    services = SimpleNamespace(settings=SETTINGS)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "root_path": root_path,
        "headers": [],
        "query_string": b"",
        "app": SimpleNamespace(state=SimpleNamespace(services=services)),
        "path_params": {"tenant": tenant} if tenant else {},
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("root_path", "tenant", "expected"),
    [
        ("", None, "https://pacs.example.org/dicom-web"),
        ("/pacs", None, "https://pacs.example.org/pacs/dicom-web"),
        ("/pacs", "north", "https://pacs.example.org/pacs/tenants/north/dicom-web"),
    ],
)
def test_web_and_api_agree_on_the_dicomweb_base(
    root_path: str, tenant: str | None, expected: str
) -> None:
    request = request_for(root_path, tenant)
    services = request.app.state.services
    assert dicomweb_base(request) == base_url(services, request) == expected
    assert SETTINGS.dicomweb_base(root_path, tenant) == expected
