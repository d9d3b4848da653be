"""The `casework` command. Staff commands go through the HTTP API with the caller's credential;
operator commands (dev, worker, api, setup, demo) run the stack."""
