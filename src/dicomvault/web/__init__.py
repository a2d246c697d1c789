"""See DESIGN.md, module map: web/."""
