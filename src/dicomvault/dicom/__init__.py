"""See DESIGN.md, module map: dicom/."""
