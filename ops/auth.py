"""Who is calling the API: API keys that map to an actor (id + role).

Keys are kept as SHA-256 hashes in directory/api_keys.toml; the actor on every command
comes from the key, never from the request body. What an actor may see is decided in
`may_see`: a case manager their own caseload, a supervisor their team's cases, a
program lead their programs' cases.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.models import Actor, Case, Role
from domain.policy import Program


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    actor: str
    role: Role


class ApiKeysError(ValueError):
    """A keys file that cannot be used."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(path: Path) -> dict[str, Actor]:
    """sha256 of a key -> the actor it stands for."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        keys = [ApiKey.model_validate(raw) for raw in data.get("key", [])]
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ApiKeysError(f"{path}: {exc}") from exc
    return {k.sha256: Actor(id=k.actor, role=k.role) for k in keys}


def may_see(actor: Actor, case: Case, programs: dict[str, Program]) -> bool:
    program = programs.get(case.program)
    match actor.role:
        case Role.CASE_MANAGER:
            return case.manager == actor.id
        case Role.SUPERVISOR:
            return case.supervisor == actor.id
        case Role.PROGRAM_LEAD:
            return program is not None and program.lead == actor.id
        case Role.SYSTEM:
            return True
        case _:
            return False
