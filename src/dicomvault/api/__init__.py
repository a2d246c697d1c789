"""See DESIGN.md, module map: api/."""
