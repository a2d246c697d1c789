"""Immutable DICOM blobs by key: the contract and its implementations (DESIGN.md, storage/).

Only ``bootstrap.py`` picks an implementation; everything else codes against ``BlobStore``.
"""

from dicomvault.storage.base import BlobNotFound, BlobStore, InvalidBlobKey, blob_key, check_key
from dicomvault.storage.local import LocalBlobStore
from dicomvault.storage.objectstore import ObjectBlobStore

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "InvalidBlobKey",
    "LocalBlobStore",
    "ObjectBlobStore",
    "blob_key",
    "check_key",
]
