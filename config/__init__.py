"""Configuration every casework process shares: settings from the environment, logging, the
payload codec, and how to reach Temporal. Imports nothing of the entry points or the worker."""
