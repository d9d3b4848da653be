"""Who is calling the API: API keys that map to an actor (id + role).

Keys are kept as SHA-256 hashes in directory/api_keys.toml; the actor on every command
comes from the key, never from the request body. What an actor may see is decided in
domain/access.py.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.models import Actor, Role


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


def staff_of(keys: dict[str, Actor]) -> dict[str, Actor]:
    """The people the keys stand for, by id: whom a case may name as its manager or supervisor
    (domain.access.not_staff_for). Providers are in it too, and refused there by their role."""
    return {actor.id: actor for actor in keys.values()}
