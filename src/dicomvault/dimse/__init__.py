"""See DESIGN.md, module map: dimse/."""
