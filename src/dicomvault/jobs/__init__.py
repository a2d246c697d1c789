"""See DESIGN.md, module map: jobs/."""
