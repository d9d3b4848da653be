"""The local Temporal dev server every benchmark runs on: its SQLite file in WAL mode with
`synchronous=normal`, as `casework dev` runs it, and casework's search attributes."""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import sdk_binary
from workflows.search import ALL_KEYS


async def start_dev_server(folder: str) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=sdk_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_KEYS,
        dev_server_database_filename=f"{folder}/temporal.db",
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
