"""Imports point one way: entry points → service → domain; worker → workflows/activities → domain.
A folder's code may import only the folders below it (checked on every import, also inside
functions), so the worker never loads the API or the CLI, and the domain stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("domain", "workflows", "activities", "store", "config", "service", "api", "cli", "devstack")
MAY_IMPORT = {
    "domain": set(),
    "store": {"domain"},
    "workflows": {"domain", "activities"},  # activities: their typed contracts only
    "activities": {"domain", "store"},
    # workflows: search attributes and the actor check's key type; store: clients' data keys
    "config": {"domain", "workflows", "store"},
    "worker": {"domain", "workflows", "activities", "store", "config"},
    "service": {"domain", "workflows", "store", "config"},
    "api": {"domain", "activities", "store", "config", "service"},  # activities: the callback's signing
    "cli": {"domain", "config", "service", "store", "worker", "api", "devstack"},
    "devstack": {"domain", "workflows", "store", "config", "service", "api", "worker"},
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & {*PACKAGES, "worker"}


def sources() -> list[tuple[str, Path]]:
    found = [("worker", ROOT / "worker.py")]
    for package in PACKAGES:
        found += [
            (package, path)
            for path in sorted((ROOT / package).rglob("*.py"))
            if "migrations" not in path.parts
        ]
    return found


@pytest.mark.parametrize(("package", "path"), sources(), ids=lambda v: str(v).removeprefix(str(ROOT) + "/"))
def test_imports_point_one_way(package: str, path: Path) -> None:
    wrong = imports_of(path) - MAY_IMPORT[package] - {package}
    assert not wrong, f"{path.relative_to(ROOT)} ({package}) imports {sorted(wrong)}"
