"""See DESIGN.md, module map: index/."""
