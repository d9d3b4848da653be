"""The pure core of casework: what a case is and what may happen to it.

Nothing in this package touches the network, the clock, randomness, Temporal or
SQL, so every rule can be tested in microseconds and replayed deterministically
inside a workflow.
"""
