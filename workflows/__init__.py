"""Temporal workflow code: deterministic, no I/O. Imports the domain only."""
