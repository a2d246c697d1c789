"""dicomvault: an open-source medical imaging archive (DICOMweb + DIMSE)."""

__version__ = "0.1.0"
