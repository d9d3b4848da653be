"""The case service: opening, acting on, reading and listing cases through Temporal and the
SQL record, with the caller's actor signed on every command. Used by the API and operator tools."""
