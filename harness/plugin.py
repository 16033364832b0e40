"""pytest plugin (placeholder until wired)."""
