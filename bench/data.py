"""The bench data set: generated once per scale into a cache directory and reused.

A ``manifest.json`` is written last, so an interrupted generation is redone on the next run.
All data is synthetic (``dicomvault.testing.synthetic``): no PHI.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomvault.testing.synthetic import (
    GeneratedInstance,
    generate_dataset,
    synthetic_uid,
    write_multiframe_ct,
)

MANIFEST_VERSION = 3
# Two 512x512 CT series for one 256x256 MR series: ~395 KB per instance on average.
SERIES_KINDS = ("ct512", "ct512", "mr256")


@dataclass(frozen=True)
class Scale:
    """Shape of a data set. ``large_frames`` frames of 512x512x2 bytes make the large instance."""

    patients: int
    studies_per_patient: int
    series_per_study: int
    instances_per_series: int
    large_frames: int

    @property
    def instances(self) -> int:
        return (
            self.patients
            * self.studies_per_patient
            * self.series_per_study
            * self.instances_per_series
        )


SCALES: dict[str, Scale] = {
    # 5,100 instances, 75 studies, 300 series; the large instance is 950 frames ≈ 498 MB
    # (1000 frames would pass the 500 MiB per-instance default limit of dicomvault).
    "full": Scale(25, 3, 4, 17, 950),
    # 300 instances, 10 studies; a 100-frame (≈ 52 MB) large instance.
    "small": Scale(5, 2, 3, 10, 100),
}


@dataclass(frozen=True)
class BenchData:
    """Everything a run needs: the instances and two large multi-frame instances (two SOP UIDs,
    so the second upload is a new instance, not a duplicate of the first)."""

    scale_name: str
    instances: list[GeneratedInstance]
    large: tuple[GeneratedInstance, GeneratedInstance]

    @property
    def total_bytes(self) -> int:
        return sum(i.size for i in self.instances)


def _to_json(inst: GeneratedInstance, root: Path) -> dict[str, Any]:
    record = dataclasses.asdict(inst)
    record.pop("data")
    assert inst.path is not None
    record["path"] = str(inst.path.relative_to(root))
    return record


def _from_json(record: dict[str, Any], root: Path) -> GeneratedInstance:
    return GeneratedInstance(**{**record, "path": root / record["path"], "data": None})


def _valid(instances: list[GeneratedInstance]) -> bool:
    return all(
        i.path is not None and i.path.is_file() and i.path.stat().st_size == i.size
        for i in instances
    )


def _write_large(root: Path, scale: Scale, seed: int) -> tuple[GeneratedInstance, ...]:
    """The two large multi-frame instances, streamed to disk frame by frame."""
    return tuple(
        write_multiframe_ct(
            root / f"large-{tag}.dcm",
            scale.large_frames,
            study_uid=synthetic_uid(seed, "large-study", tag),
            series_uid=synthetic_uid(seed, "large-series", tag),
            sop_uid=synthetic_uid(seed, "large-sop", tag),
            patient_id="SYN9999",
            patient_name="SYNTH^LARGE",
            accession=f"ACCLARGE{tag.upper()}",
            seed=seed + n,
        )
        for n, tag in enumerate(("a", "b"))
    )


def _cached_instances(root: Path) -> list[GeneratedInstance] | None:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return None
    instances = [_from_json(r, root) for r in json.loads(manifest.read_text())["instances"]]
    return instances if _valid(instances) else None


def _cached_large(root: Path, scale: Scale) -> list[GeneratedInstance] | None:
    manifest = root / "large.json"
    if not manifest.is_file():
        return None
    large = [_from_json(r, root) for r in json.loads(manifest.read_text())]
    ok = len(large) == 2 and all(i.number_of_frames == scale.large_frames for i in large)
    return large if ok and _valid(large) else None


def load_or_generate(cache_dir: Path, scale_name: str, seed: int = 0) -> BenchData:
    """Return the cached data set for ``scale_name``, generating what is missing or stale."""
    scale = SCALES[scale_name]
    root = cache_dir / f"{scale_name}-seed{seed}-v{MANIFEST_VERSION}"
    instances = _cached_instances(root)
    if instances is None:
        if root.exists():
            shutil.rmtree(root)
        instances = generate_dataset(
            root / "instances",
            patients=scale.patients,
            studies_per_patient=scale.studies_per_patient,
            series_per_study=scale.series_per_study,
            instances_per_series=scale.instances_per_series,
            templates=SERIES_KINDS,
            seed=seed,
        )
        doc = {
            "version": MANIFEST_VERSION,
            "scale": scale_name,
            "seed": seed,
            "instances": [_to_json(i, root) for i in instances],
        }
        (root / "manifest.json").write_text(json.dumps(doc))
    large = _cached_large(root, scale)
    if large is None:
        large = list(_write_large(root, scale, seed))
        (root / "large.json").write_text(json.dumps([_to_json(i, root) for i in large]))
    sop_uids = {i.sop_uid for i in [*instances, *large]}
    if len(sop_uids) != len(instances) + len(large):
        raise RuntimeError(f"duplicate SOP Instance UIDs in {root}: delete it and re-run")
    # The manifest lives as long as the run: out of the collector's sight, so that a full
    # collection in the client does not walk it in the middle of a timed request.
    gc.collect()
    gc.freeze()
    return BenchData(scale_name, instances, (large[0], large[1]))
