"""The SQL record of cases: events, the current-state projection, the outbox.

It outlives Temporal's history retention; auditors and reports read it.
"""
