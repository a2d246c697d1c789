"""``blob_key`` and ``check_key``: no value can address anything outside the blob root."""

from __future__ import annotations

import pytest

from dicomvault.storage import InvalidBlobKey, blob_key, check_key

STUDY, SERIES, SOP = "1.2.840.10008.1", "1.2.840.10008.1.1", "1.2.840.10008.1.1.1"
SHA = "0123456789abcdef" * 4


def test_blob_key_layout() -> None:
    assert blob_key("site-1", STUDY, SERIES, SOP, SHA) == (
        f"site-1/{STUDY}/{SERIES}/{SOP}/0123456789abcdef.dcm"
    )


def test_blob_key_with_a_put_id_names_one_put() -> None:
    key = blob_key("site-1", STUDY, SERIES, SOP, SHA, put_id="00ff00ff00ff00ff")
    assert key == f"site-1/{STUDY}/{SERIES}/{SOP}/0123456789abcdef-00ff00ff00ff00ff.dcm"
    for bad_id in ("", "xyz12345", "../../x", "0" * 7, "0" * 33, "00ff00ff\n"):
        with pytest.raises(InvalidBlobKey):
            blob_key("site-1", STUDY, SERIES, SOP, SHA, put_id=bad_id)


def test_blob_key_accepts_a_64_char_uid() -> None:
    uid = "1." + "2" * 62
    assert len(uid) == 64
    assert blob_key("t", uid, SERIES, SOP, SHA).split("/")[1] == uid


@pytest.mark.parametrize("position", [1, 2, 3])
@pytest.mark.parametrize(
    "uid",
    [
        "../../x",
        "1.2/../3",
        "1." + "2" * 63,
        "",
        "1..2",
        ".1.2",
        "1.2.",
        "1.2a",
        "1.2\x00",
        " 1.2",
        "1.2\n",
    ],
    ids=repr,
)
def test_blob_key_rejects_bad_uids(position: int, uid: str) -> None:
    parts = [STUDY, SERIES, SOP]
    parts[position - 1] = uid
    with pytest.raises(InvalidBlobKey):
        blob_key("t", parts[0], parts[1], parts[2], SHA)


@pytest.mark.parametrize(
    "tenant",
    ["", "..", "../x", "a/b", "-lead", "_lead", "a" * 65, "caf\u00e9", "a b", "a\x00"],
    ids=repr,
)
def test_blob_key_rejects_bad_tenants(tenant: str) -> None:
    with pytest.raises(InvalidBlobKey):
        blob_key(tenant, STUDY, SERIES, SOP, SHA)


@pytest.mark.parametrize(
    "sha256",
    ["", "abc", "g" * 64, "ABCDEF0123456789" * 4, "../../x" + "0" * 16, "0" * 65, "0" * 16 + "\n"],
    ids=repr,
)
def test_blob_key_rejects_non_hex_hashes(sha256: str) -> None:
    with pytest.raises(InvalidBlobKey):
        blob_key("t", STUDY, SERIES, SOP, sha256)


@pytest.mark.parametrize("key", ["a", "a/b.dcm", "t/1.2/3/.hidden", "a..b/c"])
def test_check_key_accepts_relative_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "/a", "..", "../a", "a/..", "a/../b", "a//b", "./a", "a/", "a\x00"], ids=repr
)
def test_check_key_refuses_escapes(key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        check_key(key)
