"""pytest plugin of the conformance suite (filled in by issue #5)."""
