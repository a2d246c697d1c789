"""Rendered resources and thumbnails (PS3.18 10.4.1.1.4-5) over real HTTP.

Every level and media type, the query parameters and their bad values, ETag / If-None-Match,
compressed transfer syntaxes from pydicom's sample files (fresh UIDs, synthetic patients),
decompression and dimension bombs, another tenant's UIDs, and the Redis cache.

Pixels are checked against ``dicom/render.py`` applied locally to the file as pydicom reads it
(the pipeline itself is checked against hand-computed values in tests/dicom/test_render.py): a
match proves the server read the right frame and header out of its blob.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import numpy as np
import numpy.typing as npt
import psutil  # type: ignore[import-untyped]
import pydicom
import pytest
import redis
from PIL import Image
from pydicom.encaps import generate_frames

from dicomvault.dicom.render import (
    PNG,
    EncodedFrame,
    RenderOptions,
    Viewport,
    Window,
    render_image,
)
from dicomvault.testing.synthetic import make_ct_512, make_instance, write_multiframe_ct
from tests.integration.support_data import (
    Archive,
    encode,
    fresh_ct,
    parse_multipart,
    read_dataset,
    referenced_sops,
    running_archive,
    stow,
)
from tests.support.redis_server import running_redis
from tests.support.server import password_token

# pydicom sample files, restamped with fresh UIDs: (label, template).
TEMPLATES = {
    "jpeg2000": "JPEG2000.dcm",  # JPEG 2000, MONOCHROME2 16-bit signed
    "jpeg2000-lossless": "MR_small_jp2klossless.dcm",
    "jpeg-baseline-ybr": "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
    "jpeg-baseline-422": "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline, YBR_FULL_422
    "jpeg-extended": "JPGExtended.dcm",  # JPEG extended, 12-bit
    "jpeg-lossless": "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1
    "jpeg-ls": "MR_small_jpeg_ls_lossless.dcm",
    "jpeg-ls-near": "JPEGLSNearLossless_16.dcm",
    "rle": "MR_small_RLE.dcm",
    "rle-rgb-2frame": "SC_rgb_rle_2frame.dcm",
    "palette": "examples_palette.dcm",
    "ybr-422-native": "SC_ybr_full_422_uncompressed.dcm",
    "big-endian": "MR_small_bigendian.dcm",
    "deflated": "image_dfl.dcm",
    "one-bit": "liver_1frame.dcm",
    "jpeg-multiframe": "examples_ybr_color.dcm",  # 30 frames, JPEG baseline YBR_FULL_422
}
MAX_SAMPLES = 1 << 26


@dataclass(frozen=True)
class Stored:
    label: str
    data: bytes
    study: str
    series: str
    sop: str
    frames: int

    @property
    def instance(self) -> str:
        return f"/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def _stored(label: str, data: bytes) -> Stored:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return Stored(
        label,
        data,
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
        int(ds.get("NumberOfFrames") or 1),
    )


def _bomb_native() -> bytes:
    """A header claiming 60000 x 60000 x 1000 frames of 16 bits over 16 bytes of pixels."""
    ds = read_dataset(fresh_ct())
    ds.Rows = 60000
    ds.Columns = 60000
    ds.NumberOfFrames = 1000
    ds.PixelData = bytes(16)
    return encode(ds)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    data = tmp_path_factory.mktemp("rendered") / "data"
    with running_archive(data) as signed_in:
        yield signed_in


@pytest.fixture(scope="module")
def stored(archive: Archive) -> dict[str, Stored]:
    study = pydicom.uid.generate_uid()
    ct_series, mr_series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    items = {
        # one study: a series of three 64x64 CT slices, then a 3-frame MR-ish series
        **{
            f"ct{i}": make_ct_512(
                rows=64,
                columns=64,
                study_uid=study,
                series_uid=ct_series,
                instance_number=i,
                series_number=1,
                seed=i,
            )
            for i in (1, 2, 3)
        },
        "multiframe": make_ct_512(
            rows=64, columns=64, frames=3, study_uid=study, series_uid=mr_series, series_number=2
        ),
        "ct512": make_ct_512(),
        **{label: make_instance(template) for label, template in TEMPLATES.items()},
        "bomb-native": _bomb_native(),
        # a 1024 x 256 JPEG 2000 codestream under a header that says 16 x 16
        "bomb-j2k": make_instance("JPEG2000.dcm", Rows=16, Columns=16),
    }
    with archive.http() as client:
        response = stow(client, archive.dicomweb, list(items.values()))
    assert response.status_code == 200, response.text
    result = {label: _stored(label, data) for label, data in items.items()}
    assert set(referenced_sops(response.json())) == {s.sop for s in result.values()}
    return result


@pytest.fixture(scope="module")
def http(archive: Archive, stored: dict[str, Stored]) -> Iterator[httpx.Client]:
    with archive.http() as client:
        yield client


def pixels(content: bytes) -> npt.NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(content)))


def reference(data: bytes, number: int = 1, **options: object) -> npt.NDArray[np.uint8]:
    """``dicom/render.py`` on frame ``number`` of the file, as pydicom reads it."""
    full = pydicom.dcmread(io.BytesIO(data))
    hdr = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    syntax = full.file_meta.TransferSyntaxUID
    count = int(full.get("NumberOfFrames") or 1)
    if syntax.is_encapsulated:
        frame = EncodedFrame(
            list(generate_frames(full.PixelData, number_of_frames=count))[number - 1]
        )
    else:
        frame = EncodedFrame(full.PixelData, number, number - 1, count)
    out = render_image(
        hdr,
        str(syntax),
        [frame],
        RenderOptions(media_type=PNG, **options),  # type: ignore[arg-type]
        max_frame_samples=MAX_SAMPLES,
    )
    return pixels(out)


# -- every level, every media type -----------------------------------------------------------------


@pytest.mark.parametrize("label", sorted(TEMPLATES))
def test_pydicom_samples_render_as_pydicom_reads_them(
    http: httpx.Client, stored: dict[str, Stored], label: str
) -> None:
    s = stored[label]
    response = http.get(s.instance + "/rendered", headers={"Accept": "image/png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    got = pixels(response.content)
    assert got.tolist() == reference(s.data).tolist()
    assert got.max() > got.min()  # not blank


@pytest.mark.parametrize("media", ["image/jpeg", "image/png", "image/gif"])
def test_instance_and_frame_levels_in_each_media_type(
    http: httpx.Client, stored: dict[str, Stored], media: str
) -> None:
    s = stored["ct512"]
    for path in (s.instance + "/rendered", s.instance + "/frames/1/rendered"):
        response = http.get(path, headers={"Accept": media})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media
        image = Image.open(io.BytesIO(response.content))
        assert image.format == media.split("/")[1].upper()
        assert image.size == (512, 512)


def test_jpeg_is_the_default(http: httpx.Client, stored: dict[str, Stored]) -> None:
    for accept in (None, "*/*", "image/*"):
        headers = {"Accept": accept} if accept else {}
        response = http.get(stored["ct1"].instance + "/rendered", headers=headers)
        assert response.headers["content-type"] == "image/jpeg"
        assert response.content[:3] == b"\xff\xd8\xff"


def test_accept_query_parameter_wins_over_the_header(
    http: httpx.Client, stored: dict[str, Stored]
) -> None:
    response = http.get(
        stored["ct1"].instance + "/rendered",
        params={"accept": "image/png"},
        headers={"Accept": "image/jpeg"},
    )
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "accept", ["application/dicom", "video/mp4", "text/html", "image/jp2", "application/json"]
)
def test_other_media_types_are_not_acceptable(
    http: httpx.Client, stored: dict[str, Stored], accept: str
) -> None:
    response = http.get(stored["ct1"].instance + "/rendered", headers={"Accept": accept})
    assert response.status_code == 406


def test_study_and_series_rendered_are_multipart_in_index_order(
    http: httpx.Client, stored: dict[str, Stored]
) -> None:
    ct1 = stored["ct1"]
    series = http.get(f"/studies/{ct1.study}/series/{ct1.series}/rendered")
    assert series.status_code == 200
    assert series.headers["content-type"].startswith('multipart/related; type="image/jpeg"')
    parts = parse_multipart(series)
    assert [p.headers["content-type"] for p in parts] == ["image/jpeg"] * 3
    singles = [http.get(stored[f"ct{i}"].instance + "/rendered").content for i in (1, 2, 3)]
    assert [p.content for p in parts] == singles
    study = http.get(f"/studies/{ct1.study}/rendered", headers={"Accept": "image/png"})
    study_parts = parse_multipart(study)
    assert len(study_parts) == 4  # three CT slices and the multi-frame instance
    assert all(Image.open(io.BytesIO(p.content)).format == "PNG" for p in study_parts)


def test_multipart_accept_names_the_part_type(
    http: httpx.Client, stored: dict[str, Stored]
) -> None:
    ct1 = stored["ct1"]
    response = http.get(
        f"/studies/{ct1.study}/rendered",
        headers={"Accept": 'multipart/related; type="image/png"'},
    )
    assert response.headers["content-type"].startswith('multipart/related; type="image/png"')


def test_multi_frame_instances(http: httpx.Client, stored: dict[str, Stored]) -> None:
    s = stored["multiframe"]
    png = {"Accept": PNG}
    frames = [
        pixels(http.get(s.instance + f"/frames/{n}/rendered", headers=png).content)
        for n in (1, 2, 3)
    ]
    for n, got in enumerate(frames, 1):
        assert got.tolist() == reference(s.data, n).tolist()
    assert frames[0].tolist() != frames[2].tolist()
    # the instance itself: its first frame, or every frame as an animated GIF
    first = http.get(s.instance + "/rendered", headers=png)
    assert pixels(first.content).tolist() == frames[0].tolist()
    animated = http.get(s.instance + "/rendered", headers={"Accept": "image/gif"})
    gif = Image.open(io.BytesIO(animated.content))
    assert getattr(gif, "n_frames", 1) == 3
    # several frames: one part each
    both = http.get(s.instance + "/frames/3,1/rendered", headers=png)
    assert [pixels(p.content).tolist() for p in parse_multipart(both)] == [
        frames[2].tolist(),
        frames[0].tolist(),
    ]


def test_compressed_multi_frame_frame_by_frame(
    http: httpx.Client, stored: dict[str, Stored]
) -> None:
    s = stored["jpeg-multiframe"]
    assert s.frames == 30
    response = http.get(s.instance + "/frames/17/rendered", headers={"Accept": PNG})
    assert pixels(response.content).tolist() == reference(s.data, 17).tolist()


def test_frames_that_do_not_exist(http: httpx.Client, stored: dict[str, Stored]) -> None:
    s = stored["multiframe"]
    assert http.get(s.instance + "/frames/4/rendered").status_code == 404
    assert http.get(s.instance + "/frames/0/thumbnail").status_code == 404
    assert http.get(s.instance + "/frames/x/rendered").status_code == 400


# -- thumbnails ------------------------------------------------------------------------------------


def test_thumbnails_at_every_level(http: httpx.Client, stored: dict[str, Stored]) -> None:
    ct2, big = stored["ct2"], stored["ct512"]
    # study and series: the middle instance of the first series (ct2 of ct1..ct3)
    middle = http.get(ct2.instance + "/thumbnail").content
    assert http.get(f"/studies/{ct2.study}/thumbnail").content == middle
    assert http.get(f"/studies/{ct2.study}/series/{ct2.series}/thumbnail").content == middle
    # a 64 x 64 image is not enlarged; a 512 x 512 one shrinks to 128 x 128
    assert Image.open(io.BytesIO(middle)).size == (64, 64)
    response = http.get(big.instance + "/thumbnail")
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (128, 128)
    sized = http.get(big.instance + "/thumbnail", params={"viewport": "64,32"})
    assert Image.open(io.BytesIO(sized.content)).size == (32, 32)
    png = http.get(big.instance + "/frames/1/thumbnail", headers={"Accept": PNG})
    assert Image.open(io.BytesIO(png.content)).format == "PNG"


def test_thumbnail_of_a_multi_frame_instance_is_its_middle_frame(
    http: httpx.Client, stored: dict[str, Stored]
) -> None:
    s = stored["multiframe"]
    thumb = http.get(s.instance + "/thumbnail", headers={"Accept": PNG})
    assert pixels(thumb.content).tolist() == reference(s.data, 2).tolist()


# -- query parameters ------------------------------------------------------------------------------


def test_window_parameter(http: httpx.Client, stored: dict[str, Stored]) -> None:
    s = stored["ct512"]
    url = s.instance + "/rendered"
    own = pixels(http.get(url, headers={"Accept": PNG}).content)
    for value, window in (
        ("400,2000,linear", ("400", "2000", "LINEAR")),
        ("0,100,LINEAR_EXACT", ("0", "100", "LINEAR_EXACT")),
        ("40,400,sigmoid", ("40", "400", "SIGMOID")),
        ("40,400", ("40", "400", "LINEAR")),
    ):
        got = pixels(http.get(url, params={"window": value}, headers={"Accept": PNG}).content)
        center, width, function = window
        expected = reference(s.data, window=Window(float(center), float(width), function))
        assert got.tolist() == expected.tolist()
        if value != "40,400":  # the file's own window is 40/400 linear
            assert got.tolist() != own.tolist()


def test_viewport_parameter(http: httpx.Client, stored: dict[str, Stored]) -> None:
    s = stored["ct512"]
    url = s.instance + "/rendered"
    for value, size in (("256,256", (256, 256)), ("100,50", (50, 50)), ("1024,1024", (1024, 1024))):
        response = http.get(url, params={"viewport": value})
        assert Image.open(io.BytesIO(response.content)).size == size
    region = http.get(url, params={"viewport": "100,100,0,0,100,100"}, headers={"Accept": PNG})
    expected = reference(s.data, viewport=Viewport(100, 100, 0, 0, 100, 100))
    assert pixels(region.content).tolist() == expected.tolist()
    flipped = http.get(url, params={"viewport": "512,512,512,,-512,"}, headers={"Accept": PNG})
    whole = reference(s.data)
    assert pixels(flipped.content).tolist() == whole[:, ::-1].tolist()


def test_quality_and_annotation(http: httpx.Client, stored: dict[str, Stored]) -> None:
    url = stored["ct512"].instance + "/rendered"
    low = http.get(url, params={"quality": "5"})
    high = http.get(url, params={"quality": "100"})
    assert low.status_code == high.status_code == 200
    assert len(low.content) < len(high.content)
    annotated = http.get(url, params={"annotation": "patient,technique"})
    plain = http.get(url)
    assert annotated.status_code == 200 and annotated.content == plain.content
    assert http.get(url, params={"unknown": "x", "charset": "utf-8"}).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"window": "abc"},
        {"window": "40"},
        {"window": "40,400,cubic"},
        {"window": "40,0.5,linear"},
        {"window": "40,0,sigmoid"},
        {"window": "nan,400"},
        {"window": "1,2,linear,4"},
        {"viewport": "0,10"},
        {"viewport": "10"},
        {"viewport": "10,10,1,2"},
        {"viewport": "a,b"},
        {"viewport": "20000,20000"},
        {"viewport": "10,10,-1,0,5,5"},
        {"viewport": "10,10,0,0,0,5"},
        {"viewport": "10,10,600,600,5,5"},  # region outside the 512 x 512 image
        {"quality": "0"},
        {"quality": "101"},
        {"quality": "high"},
    ],
)
def test_bad_parameters_are_400(
    http: httpx.Client, stored: dict[str, Stored], params: dict[str, str]
) -> None:
    response = http.get(stored["ct512"].instance + "/rendered", params=params)
    assert response.status_code == 400, (params, response.text)
    assert response.json()["detail"]


def test_a_parameter_given_twice_is_400(http: httpx.Client, stored: dict[str, Stored]) -> None:
    url = stored["ct1"].instance + "/rendered?window=40,400&window=50,500"
    assert http.get(url).status_code == 400


def test_bad_uids_are_400(http: httpx.Client) -> None:
    assert http.get("/studies/not-a-uid/rendered").status_code == 400
    assert http.get("/studies/1.2.3/series/x/thumbnail").status_code == 400


# -- caching ---------------------------------------------------------------------------------------


def test_strong_etags_and_304(http: httpx.Client, stored: dict[str, Stored]) -> None:
    url = stored["ct1"].instance + "/rendered"
    first = http.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["cache-control"] == "private"
    again = http.get(url)
    assert again.headers["etag"] == etag and again.content == first.content
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        not_modified = http.get(url, headers={"If-None-Match": header})
        assert not_modified.status_code == 304, header
        assert not_modified.content == b""
        assert not_modified.headers["etag"] == etag
    assert http.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200
    # every parameter and the media type are part of the tag
    tags = {
        http.get(url, params=params, headers=headers).headers["etag"]
        for params, headers in (
            ({}, {}),
            ({}, {"Accept": PNG}),
            ({"window": "1,2"}, {}),
            ({"viewport": "10,10"}, {}),
            ({"quality": "50"}, {}),
        )
    }
    assert len(tags) == 5
    assert http.get(stored["ct2"].instance + "/rendered").headers["etag"] != etag


def test_multipart_etag_and_bytes_are_stable(http: httpx.Client, stored: dict[str, Stored]) -> None:
    url = f"/studies/{stored['ct1'].study}/rendered"
    first, second = http.get(url), http.get(url)
    assert first.headers["etag"] == second.headers["etag"]
    assert first.content == second.content  # a strong tag names exactly these bytes
    assert http.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304


# -- what cannot be rendered -----------------------------------------------------------------------


def _rss(pid: int) -> int:
    process = psutil.Process(pid)
    return int(process.memory_info().rss) + sum(
        int(child.memory_info().rss) for child in process.children(recursive=True)
    )


def test_a_dimension_bomb_is_refused_quickly_with_bounded_memory(
    archive: Archive, http: httpx.Client, stored: dict[str, Stored]
) -> None:
    s = stored["bomb-native"]
    before = _rss(archive.server.process.pid)
    for path in (
        s.instance + "/rendered",
        s.instance + "/frames/500/rendered",
        s.instance + "/thumbnail",
        f"/studies/{s.study}/rendered",
    ):
        started = time.monotonic()
        response = http.get(path)
        assert response.status_code == 422, response.text
        assert time.monotonic() - started < 2.0
    assert _rss(archive.server.process.pid) - before < 100 * 1024 * 1024


def test_a_codestream_larger_than_its_header_is_refused(
    http: httpx.Client, stored: dict[str, Stored]
) -> None:
    response = http.get(stored["bomb-j2k"].instance + "/rendered")
    assert response.status_code == 422
    assert "larger than the header" in response.json()["detail"]


def test_an_instance_without_pixels_is_not_acceptable(archive: Archive, http: httpx.Client) -> None:
    ds = read_dataset(fresh_ct())
    del ds.PixelData
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    assert stow(http, archive.dicomweb, [encode(ds)]).status_code == 200
    base = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    instance = f"{base}/instances/{ds.SOPInstanceUID}"
    assert http.get(instance + "/rendered").status_code == 406
    assert http.get(instance + "/thumbnail").status_code == 406
    assert http.get(base + "/thumbnail").status_code == 406


# -- tenants ---------------------------------------------------------------------------------------


def test_another_tenants_uids_are_404(archive: Archive, stored: dict[str, Stored]) -> None:
    base = archive.server.base_url
    auth = archive.auth
    tenant = httpx.post(f"{base}/api/v1/tenants", json={"name": "elsewhere"}, headers=auth)
    assert tenant.status_code == 201
    username, password = "elsewhere-rad", "elsewhere-password-1"
    user = {
        "username": username,
        "password": password,
        "roles": ["radiologist"],
        "tenants": ["elsewhere"],
        "default_tenant": "elsewhere",
    }
    assert httpx.post(f"{base}/api/v1/users", json=user, headers=auth).status_code == 201
    token = password_token(base, username, password)
    s = stored["ct1"]
    paths = [
        f"/studies/{s.study}/rendered",
        f"/studies/{s.study}/thumbnail",
        f"/studies/{s.study}/series/{s.series}/rendered",
        s.instance + "/rendered",
        s.instance + "/frames/1/rendered",
        s.instance + "/thumbnail",
    ]
    with httpx.Client(
        base_url=archive.dicomweb, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as other:
        for path in paths:
            assert other.get(path).status_code == 404, path
    with archive.http() as admin:
        for path in paths:
            assert admin.get(path).status_code == 200, path
    # the tenant prefix: the admin's own tenant serves, a tenant it lacks looks like nothing
    with httpx.Client(base_url=base, headers=auth, timeout=30) as admin:
        assert admin.get(f"/tenants/default/dicom-web{s.instance}/rendered").status_code == 200
        assert admin.get(f"/tenants/elsewhere/dicom-web{s.instance}/rendered").status_code == 404


# -- Redis -----------------------------------------------------------------------------------------


def test_rendered_images_are_cached_in_redis_when_configured(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("rendered-redis") / "data"
    ct = fresh_ct()
    with running_redis() as url, running_archive(data_dir, env={"DICOMVAULT_REDIS_URL": url}) as a:
        s = _stored("ct", ct)
        with a.http() as client:
            assert stow(client, a.dicomweb, [ct]).status_code == 200
            first = client.get(s.instance + "/rendered")
            assert first.status_code == 200
        etag = first.headers["etag"].strip('"')
        raw = redis.Redis.from_url(url)
        try:
            assert raw.get(f"dicomvault:rendered:{etag}") == first.content
            assert raw.ttl(f"dicomvault:rendered:{etag}") > 0
        finally:
            raw.close()


# -- streaming: many parts, one at a time ----------------------------------------------------------


def test_a_study_of_many_instances_is_streamed_and_every_part_is_right(
    archive: Archive, http: httpx.Client
) -> None:
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    data = [
        make_ct_512(
            rows=32,
            columns=32,
            study_uid=study,
            series_uid=series if i <= 30 else None,  # two series: 30 and 10 instances
            series_number=1 if i <= 30 else 2,
            instance_number=i,
            seed=100 + i,
        )
        for i in range(1, 41)
    ]
    assert stow(http, archive.dicomweb, data).status_code == 200
    response = http.get(f"/studies/{study}/rendered", headers={"Accept": PNG})
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"  # streamed, not buffered
    assert "content-length" not in response.headers
    parts = parse_multipart(response)
    assert len(parts) == 40
    assert all(p.headers["content-type"] == PNG for p in parts)
    for got, sent in zip(parts, data, strict=True):  # series then instance order
        assert pixels(got.content).tolist() == reference(sent).tolist()
    again = http.get(f"/studies/{study}/rendered", headers={"Accept": PNG})
    assert again.content == response.content and again.headers["etag"] == response.headers["etag"]


def test_an_animated_gif_is_streamed_frame_for_frame(
    http: httpx.Client, stored: dict[str, Stored]
) -> None:
    s = stored["multiframe"]
    response = http.get(s.instance + "/rendered", headers={"Accept": "image/gif"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert response.headers["transfer-encoding"] == "chunked"
    gif = Image.open(io.BytesIO(response.content))
    for n in (1, 2, 3):
        gif.seek(n - 1)
        assert np.asarray(gif.convert("L")).tolist() == reference(s.data, n).tolist()
    cached = http.get(s.instance + "/rendered", headers={"Accept": "image/gif"})
    assert cached.content == response.content
    assert cached.headers["etag"] == response.headers["etag"]


def test_a_part_that_fails_once_streaming_has_begun_truncates_the_response(
    archive: Archive, http: httpx.Client
) -> None:
    """The first image is rendered before the status is sent, so its failure is a 422; a later
    one can only end the connection early: the client sees a broken body, never a short one."""
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    good = make_ct_512(rows=32, columns=32, study_uid=study, series_uid=series, instance_number=1)
    # a 1024 x 256 JPEG 2000 codestream under a header that says 16 x 16: found when decoding
    bomb = make_instance(
        "JPEG2000.dcm",
        study_uid=study,
        series_uid=series,
        instance_number=2,
        Rows=16,
        Columns=16,
    )
    assert stow(http, archive.dicomweb, [good, bomb]).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(f"/studies/{study}/series/{series}/rendered")
    alone = _stored("bomb", bomb)
    first = http.get(f"{alone.instance}/rendered")
    assert first.status_code == 422 and "larger than the header" in first.json()["detail"]
    # the server is fine afterwards
    assert http.get(_stored("good", good).instance + "/rendered").status_code == 200


# -- limits on one response ------------------------------------------------------------------------

LIMITS = {
    "DICOMVAULT_MAX_RENDERED_FRAMES": "5",
    # 20,000 samples: one 128 x 128 grayscale frame (16,384), not two
    "DICOMVAULT_MAX_RENDERED_RESPONSE_PIXELS": "20000",
}


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Archive, dict[str, Stored]]]:
    data_dir = tmp_path_factory.mktemp("rendered-limits") / "data"
    study = pydicom.uid.generate_uid()
    six, five = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    items = {
        **{
            f"six{i}": make_ct_512(
                rows=16, columns=16, study_uid=study, series_uid=six, instance_number=i, seed=i
            )
            for i in range(1, 7)
        },
        **{
            f"five{i}": make_ct_512(
                rows=16,
                columns=16,
                study_uid=study,
                series_uid=five,
                series_number=2,
                instance_number=i,
                seed=i,
            )
            for i in range(1, 6)
        },
        "frames6": make_ct_512(rows=16, columns=16, frames=6),
        "square": make_ct_512(rows=128, columns=128, frames=3),
        "big": make_ct_512(rows=256, columns=256),
    }
    with running_archive(data_dir, env=LIMITS) as signed_in:
        with signed_in.http() as client:
            assert stow(client, signed_in.dicomweb, list(items.values())).status_code == 200
        yield signed_in, {label: _stored(label, data) for label, data in items.items()}


def _refused(client: httpx.Client, path: str, words: str, **kwargs: object) -> None:
    started = time.monotonic()
    response = client.get(path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 422, (path, response.text)
    assert words in response.json()["detail"], response.text
    assert time.monotonic() - started < 1.0


def test_max_rendered_frames_is_enforced_over_http(
    limited: tuple[Archive, dict[str, Stored]],
) -> None:
    archive, s = limited
    six, five, frames6 = s["six1"], s["five1"], s["frames6"]
    with archive.http() as client:
        _refused(client, f"/studies/{six.study}/series/{six.series}/rendered", "6 frames")
        _refused(client, f"/studies/{six.study}/rendered", "11 frames")
        series = client.get(f"/studies/{five.study}/series/{five.series}/rendered")
        assert series.status_code == 200 and len(parse_multipart(series)) == 5
        gif = {"Accept": "image/gif"}
        _refused(client, frames6.instance + "/rendered", "6 frames", headers=gif)
        _refused(client, frames6.instance + "/frames/1,2,3,4,5,6/rendered", "6 frames")
        listed = client.get(frames6.instance + "/frames/1,2,3,4,5/rendered")
        assert listed.status_code == 200 and len(parse_multipart(listed)) == 5
        assert client.get(frames6.instance + "/rendered").status_code == 200  # its first frame


def test_a_response_over_the_sample_budget_is_refused_before_rendering(
    limited: tuple[Archive, dict[str, Stored]],
) -> None:
    archive, s = limited
    square, big = s["square"], s["big"]
    with archive.http() as client:
        assert client.get(square.instance + "/frames/1/rendered").status_code == 200
        _refused(client, square.instance + "/frames/1,2/rendered", "rendered samples")
        _refused(client, square.instance + "/rendered", "49152", headers={"Accept": "image/gif"})
        # a smaller viewport makes the same frames fit: 2 x 64 x 64
        small = client.get(square.instance + "/frames/1,2/rendered", params={"viewport": "64,64"})
        assert small.status_code == 200
        sizes = [Image.open(io.BytesIO(p.content)).size for p in parse_multipart(small)]
        assert sizes == [(64, 64), (64, 64)]
        # one frame over the budget, unless the viewport or a thumbnail shrinks it
        _refused(client, big.instance + "/rendered", "65536")
        assert client.get(big.instance + "/rendered", params={"viewport": "100,100"}).is_success
        thumbnail = client.get(big.instance + "/thumbnail")
        assert Image.open(io.BytesIO(thumbnail.content)).size == (128, 128)
        # the refusal comes from the index: it stands with a cached ETag too
        _refused(client, big.instance + "/rendered", "65536", headers={"If-None-Match": "*"})


# -- memory while streaming a large multi-frame instance ------------------------------------------


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Archive, Stored]]:
    """A 200-frame 512 x 512 CT (100 MB) on a server without a render cache, so that what the
    server holds while rendering is what the response costs it."""
    root = tmp_path_factory.mktemp("rendered-large")
    generated = write_multiframe_ct(root / "multiframe.dcm", 200)
    data = generated.read_bytes()
    with running_archive(root / "data", env={"DICOMVAULT_RENDER_CACHE_BYTES": "0"}) as signed_in:
        with signed_in.http() as client:
            assert stow(client, signed_in.dicomweb, [data]).status_code == 200
        yield signed_in, _stored("large", data)


@contextmanager
def peak_rss(pid: int) -> Iterator[Callable[[], int]]:
    """The highest RSS of the server's process tree, sampled every 20 ms."""
    peak = [_rss(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak[0]
    finally:
        stop.set()
        sampler.join()


def test_streaming_a_large_multi_frame_instance_keeps_the_server_small(
    large: tuple[Archive, Stored],
) -> None:
    """200 parts of 1024 x 1024 PNG (~66 MB) and a 200-frame GIF (~27 MB): holding every part,
    then joining them, grew this server by ~120 MB and ~250 MB; streamed, it grows by about
    one frame and one read batch."""
    archive, s = large
    pid = archive.server.process.pid
    every_frame = ",".join(str(n) for n in range(1, 201))
    upscaled = Viewport(1024, 1024)
    with archive.http() as client:
        warm = client.get(s.instance + "/frames/1/rendered", headers={"Accept": PNG})
        assert warm.status_code == 200  # decoders loaded, first buffers allocated
        before = _rss(pid)
        with peak_rss(pid) as multipart_peak:
            response = client.get(
                f"{s.instance}/frames/{every_frame}/rendered",
                params={"viewport": "1024,1024"},
                headers={"Accept": PNG},
            )
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        parts = parse_multipart(response)
        assert len(parts) == 200
        assert {Image.open(io.BytesIO(p.content)).size for p in parts} == {(1024, 1024)}
        for n in (1, 200):
            expected = reference(s.data, n, viewport=upscaled)
            assert pixels(parts[n - 1].content).tolist() == expected.tolist()
        assert multipart_peak() - before < 50 * 1024 * 1024
        del response, parts

        with peak_rss(pid) as gif_peak:
            animated = client.get(s.instance + "/rendered", headers={"Accept": "image/gif"})
        assert animated.status_code == 200
        gif = Image.open(io.BytesIO(animated.content))
        assert getattr(gif, "n_frames", 1) == 200
        gif.seek(199)
        assert np.asarray(gif.convert("L")).tolist() == reference(s.data, 200).tolist()
        assert gif_peak() - before < 50 * 1024 * 1024
