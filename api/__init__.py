"""The HTTP API: every staff command and read through one door (API keys, scope, access log),
the provider callback, and the codec the Temporal UI decodes through."""
