"""Settings from the environment, or from secret files where a container platform mounts them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.processes import environment


def test_secrets_come_from_files_in_the_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "casework_actor_key").write_text("a-key-from-a-file\n")
    (tmp_path / "casework_database_url").write_text("postgresql://casework@records-db/casework\n")
    env = environment(secrets_dir=str(tmp_path))
    del env["CASEWORK_ACTOR_KEY"]  # the environment wins over a file; here there is only the file
    read = (
        "from config.settings import Settings; s = Settings(); "
        "print(s.actor_key.get_secret_value(), s.database_url)"
    )
    done = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["a-key-from-a-file", "postgresql://casework@records-db/casework"]
