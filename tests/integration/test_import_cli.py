"""``dicomvault import PATH``: a folder tree loaded by the CLI, then served over DICOMweb.

The command runs as a subprocess against a data folder no server is using; the same folder is
then served, so the test proves the import went through the one ingest pipeline into the index
and the blob store a server reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomvault.testing.synthetic import mixed_sample_set
from tests.integration.support_data import (
    SERVER_ENV,
    STUDY_UID,
    Archive,
    Sample,
    fresh_ct,
    running_archive,
    sample_from_bytes,
    uids,
)

SUMMARY = re.compile(
    r"stored (\d+), already stored (\d+), skipped \(not DICOM\) (\d+), failed (\d+)"
)


@dataclass(frozen=True)
class ImportRun:
    returncode: int
    stdout: str
    stderr: str

    def counts(self) -> tuple[int, int, int, int]:
        found = SUMMARY.search(self.stdout)
        assert found, self.stdout
        stored, duplicates, skipped, failed = (int(g) for g in found.groups())
        return stored, duplicates, skipped, failed


def _import(data_dir: Path, *paths: Path) -> ImportRun:
    exe = Path(sys.executable).parent / "dicomvault"
    done = subprocess.run(  # noqa: S603 - our own command, arguments we made
        [str(exe), "import", *map(str, paths), "--data-dir", str(data_dir), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **SERVER_ENV},
    )
    return ImportRun(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Tree:
    root: Path
    samples: list[Sample]
    broken: Path
    not_dicom: list[Path]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """11 DICOM files in study/series folders, three non-DICOM files, one broken DICOM file."""
    root = tmp_path_factory.mktemp("import-tree")
    generated = mixed_sample_set(root / "archive" / "nested", seed=404)
    samples = [sample_from_bytes(str(g.path), g.read_bytes()) for g in generated]
    not_dicom = [root / "README.txt", root / "archive" / "scan.png", root / "archive" / "empty"]
    not_dicom[0].write_text("exported from a synthetic source\n")
    not_dicom[1].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    not_dicom[2].write_bytes(b"")
    broken = root / "archive" / "broken.dcm"
    broken.write_bytes(fresh_ct()[:300])  # preamble + DICM, then the header stops mid-element
    return Tree(root, samples, broken, not_dicom)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("import-data") / "data"


@pytest.fixture(scope="module")
def first_run(tree: Tree, data_dir: Path) -> ImportRun:
    return _import(data_dir, tree.root)


def test_summary_counts_and_exit_code(first_run: ImportRun, tree: Tree) -> None:
    assert first_run.returncode == 1, first_run.stdout + first_run.stderr
    assert first_run.counts() == (len(tree.samples), 0, len(tree.not_dicom), 1)


def test_failure_names_the_file_and_a_reason(first_run: ImportRun, tree: Tree) -> None:
    lines = [line for line in first_run.stderr.splitlines() if "failed:" in line]
    assert len(lines) == 1, first_run.stderr
    reason = lines[0].split(f"{tree.broken}:", 1)
    assert len(reason) == 2 and reason[1].strip(), lines[0]


def test_reimport_counts_duplicates_and_succeeds(
    first_run: ImportRun, tree: Tree, data_dir: Path
) -> None:
    assert first_run.returncode == 1
    again = _import(data_dir, tree.root / "archive" / "nested")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.counts() == (0, len(tree.samples), 0, 0)


@pytest.fixture(scope="module")
def served(first_run: ImportRun, data_dir: Path) -> Iterator[Archive]:
    assert first_run.counts()[0] > 0
    with running_archive(data_dir) as signed_in:
        yield signed_in


def test_imported_data_is_served(served: Archive, tree: Tree) -> None:
    with served.http() as http:
        studies = http.get("/studies").json()
        assert uids(studies, STUDY_UID) == {s.study_uid for s in tree.samples}
        for s in tree.samples[:4]:
            response = http.get(
                f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}",
                headers={"Accept": "application/dicom"},
            )
            assert response.status_code == 200
            assert response.content == s.data
    assert len(served.server.blob_files()) == len(tree.samples)


def test_originals_are_untouched(first_run: ImportRun, tree: Tree) -> None:
    assert first_run.returncode == 1
    for s in tree.samples:
        assert Path(s.label).read_bytes() == s.data
    assert tree.broken.stat().st_size == 300
