"""Test and benchmark support shipped with dicomvault: synthetic DICOM data, never real PHI."""

from dicomvault.testing.synthetic import (
    COMPRESSED_TEMPLATES,
    NATIVE_KINDS,
    TEMPLATES,
    GeneratedInstance,
    generate_dataset,
    make_ct_512,
    make_instance,
    make_native,
    mixed_sample_set,
    synthetic_uid,
    write_multiframe_ct,
)

__all__ = [
    "COMPRESSED_TEMPLATES",
    "NATIVE_KINDS",
    "TEMPLATES",
    "GeneratedInstance",
    "generate_dataset",
    "make_ct_512",
    "make_instance",
    "make_native",
    "mixed_sample_set",
    "synthetic_uid",
    "write_multiframe_ct",
]
