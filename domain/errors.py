"""How invalid input is explained to a person: one line, each problem with where it is."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def explain(errors: Iterable[Mapping[str, Any]], whole: str = "input") -> str:
    """Pydantic's errors as 'field.path: message; ...' (`whole` names a problem with no field)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in errors)
