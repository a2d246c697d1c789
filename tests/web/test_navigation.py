"""``next`` after login: same-origin paths only (no open redirect)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomvault.web.navigation import safe_next


@pytest.mark.parametrize(
    "candidate",
    [
        "/",
        "/studies/1.2.3",
        "/?PatientID=SYN0001&sort=name",
        "/upload",
        "/viewer/viewer?StudyInstanceUIDs=1.2.3",
    ],
)
def test_same_origin_paths_are_kept(candidate: str) -> None:
    assert safe_next(candidate) == candidate


@pytest.mark.parametrize(
    "candidate",
    [
        None,
        "",
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "/%0a",  # kept as text; but control characters themselves are refused:
        "/\nLocation: x",
        "/login",
        "/" + "a" * 3000,
    ],
)
def test_anything_else_becomes_the_worklist(candidate: str | None) -> None:
    result = safe_next(candidate)
    if candidate == "/%0a":
        assert result == "/%0a"  # percent-encoded text is a path, harmless
    else:
        assert result == "/"


@given(st.text(max_size=60))
def test_result_is_always_a_same_origin_path(candidate: str) -> None:
    result = safe_next(candidate)
    assert result.startswith("/") and not result.startswith("//")
    assert "\\" not in result and not any(ord(c) < 0x21 for c in result)
