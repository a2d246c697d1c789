"""See DESIGN.md, module map: retrieve/."""
