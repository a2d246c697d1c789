"""See DESIGN.md, module map: observability/."""
