"""See DESIGN.md, module map: query/."""
