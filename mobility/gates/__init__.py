"""Great Expectations gates: landing (per batch) and publish (on the marts before publication)."""
