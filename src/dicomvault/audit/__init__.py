"""See DESIGN.md, module map: audit/."""
