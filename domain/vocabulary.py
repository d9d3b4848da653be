"""The vocabulary cases are described in: need domains and service types, as data.

Casework's stock terms (`NeedDomain`, `ServiceType` in domain/models.py) are always known; a
deployment's directory/vocabulary.toml labels them, gives them aliases and adds its own terms.
It may add, never remove: a value once accepted stays valid, so old events, running cases and
providers keep their meaning.

The vocabulary is checked where input enters — the case service (`check_command`, before a
command reaches its case) and directory loading (each provider's services) — and aliases are
turned into their term's slug there. Workflows never read it: inside a case any well-formed
slug is accepted, so replay does not depend on a file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.commands import CompleteAssessment, Refer, StaffCommand, SubmitPlan
from domain.errors import Refusal, Rejected, explain
from domain.models import NeedDomain, ServiceType, Slug

Kind = Literal["need domain", "service type"]


class Term(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: Slug
    label: str = Field(min_length=1, max_length=100)
    aliases: frozenset[Slug] = frozenset()
    description: str = Field(default="", max_length=500)


def _stock(members: type[StrEnum]) -> dict[str, Term]:
    return {m.value: Term(slug=m.value, label=m.value.replace("_", " ").capitalize()) for m in members}


class Terms(BaseModel):
    """One list of terms (need domains or service types) with its aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    terms: dict[str, Term]

    def slugs(self) -> list[str]:
        return sorted(self.terms)

    def canonical(self, text: str) -> str:
        """The slug `text` names (itself or an alias). Raises Rejected (VALIDATION) listing
        the known ones."""
        if text in self.terms:
            return text
        for term in self.terms.values():
            if text in term.aliases:
                return term.slug
        known = ", ".join(self.slugs())
        raise Rejected(Refusal.VALIDATION, f"unknown {self.kind} {text!r} (known: {known})")


class Vocabulary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    need_domains: Terms = Terms(kind="need domain", terms=_stock(NeedDomain))
    service_types: Terms = Terms(kind="service type", terms=_stock(ServiceType))

    def check_command(self, command: StaffCommand) -> StaffCommand:
        """The command with every need domain and service type it names in its slug form;
        Rejected (VALIDATION) when one is unknown."""
        if isinstance(command, CompleteAssessment):
            needs = [
                n.model_copy(update={"domain": self.need_domains.canonical(n.domain)})
                for n in command.assessment.needs
            ]
            assessment = command.assessment.model_copy(update={"needs": needs})
            return command.model_copy(update={"assessment": assessment})
        if isinstance(command, SubmitPlan):
            goals = [
                g.model_copy(update={"domain": self.need_domains.canonical(g.domain)}) if g.domain else g
                for g in command.goals
            ]
            return command.model_copy(update={"goals": goals})
        if isinstance(command, Refer):
            return command.model_copy(update={"service": self.service_types.canonical(command.service)})
        return command


STOCK = Vocabulary()


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used; the message names the file and the problem."""


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    need_domain: list[Term] = []
    service_type: list[Term] = []


def load_vocabulary(folder: Path) -> Vocabulary:
    """The stock vocabulary with `folder`/vocabulary.toml's terms laid over it (the stock
    one alone when there is no file)."""
    path = folder / "vocabulary.toml"
    if not path.exists():
        return STOCK
    try:
        data = _File.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise VocabularyError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise VocabularyError(f"{path}: {explain(exc.errors())}") from exc
    try:
        return Vocabulary(
            need_domains=_merge("need domain", STOCK.need_domains.terms, data.need_domain),
            service_types=_merge("service type", STOCK.service_types.terms, data.service_type),
        )
    except ValueError as exc:
        raise VocabularyError(f"{path}: {exc}") from exc


def _merge(kind: Kind, stock: Mapping[str, Term], given: Iterable[Term]) -> Terms:
    """Stock terms, relabelled or added to by the file's. A name (slug or alias) means one
    term only, so an alias can never shadow a term."""
    terms = dict(stock)
    for term in given:
        terms[term.slug] = term
    owner: dict[str, str] = {}
    for term in terms.values():
        for name in (term.slug, *sorted(term.aliases)):
            if owner.setdefault(name, term.slug) != term.slug:
                raise ValueError(f"{kind} {name!r} names both {owner[name]!r} and {term.slug!r}")
    return Terms(kind=kind, terms=terms)
