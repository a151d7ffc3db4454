"""Intake of partner feeds: connectors (one per protocol) and landing under contract."""
