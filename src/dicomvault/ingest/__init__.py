"""See DESIGN.md, module map: ingest/."""
