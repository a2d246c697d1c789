"""See DESIGN.md, module map: auth/."""
