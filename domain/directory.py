"""Who messages go to: providers (with their channel) and staff (with their email), and
the rule a referral must meet against them (`Directory.check_referral`).

The directory is data (directory/*.toml), with the vocabulary its services are named in
(domain/vocabulary.py, directory/vocabulary.toml). The case service (service/facade.py) asks
`check_referral` before a referral reaches its case; the delivery activity reads it to
find where a message goes. Workflows never read it: a referral carries what it needs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl, ValidationError

from domain.commands import Refer
from domain.errors import Refusal, Rejected, explain
from domain.models import ServiceTypeSlug
from domain.policy import Program
from domain.vocabulary import STOCK, Vocabulary, VocabularyError, load_vocabulary


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmailChannel(_Strict):
    kind: Literal["email"] = "email"
    address: EmailStr


class WebhookChannel(_Strict):
    kind: Literal["webhook"] = "webhook"
    url: HttpUrl
    secret_env: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]*$", description="environment variable holding the shared HMAC secret"
    )


Channel = Annotated[EmailChannel | WebhookChannel, Field(discriminator="kind")]


class Provider(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    services: frozenset[ServiceTypeSlug] = Field(min_length=1)
    channel: Channel
    response_time: timedelta | None = Field(default=None, gt=timedelta(0))
    # The secret the provider signs its answers with (the callback); webhook providers
    # use their channel's secret unless this names another.
    callback_secret_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")

    @property
    def answer_secret_env(self) -> str | None:
        if self.callback_secret_env:
            return self.callback_secret_env
        return self.channel.secret_env if isinstance(self.channel, WebhookChannel) else None


class Person(_Strict):
    id: str
    name: str
    email: EmailStr


class Directory(_Strict):
    providers: dict[str, Provider] = {}
    staff: dict[str, Person] = {}
    staff_email_domain: str = "casework.invalid"
    vocabulary: Vocabulary = STOCK

    def provider(self, provider_id: str) -> Provider | None:
        return self.providers.get(provider_id)

    def staff_email(self, person_id: str) -> str:
        """Staff not listed get <id>@<staff_email_domain>, so no notice is ever undeliverable by design."""
        person = self.staff.get(person_id)
        return str(person.email) if person else f"{person_id}@{self.staff_email_domain}"

    def check_referral(self, command: Refer) -> Refer:
        """The referral as it goes to the case: it must name a provider listed here that offers
        the service, and gets the provider's own response time unless it sets one. Raises
        Rejected (VALIDATION) naming the providers or services there are."""
        command = command.model_copy(
            update={"service": self.vocabulary.service_types.canonical(command.service)}
        )
        provider = self.provider(command.provider)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise Rejected(Refusal.VALIDATION, f"unknown provider {command.provider!r} (known: {known})")
        if command.service not in provider.services:
            offered = ", ".join(sorted(provider.services))
            raise Rejected(
                Refusal.VALIDATION, f"{provider.id} does not offer {command.service} (offers: {offered})"
            )
        if command.respond_within is None and provider.response_time is not None:
            return command.model_copy(update={"respond_within": provider.response_time})
        return command

    def uncovered(self, program: Program) -> list[str]:
        """What a program names that this deployment cannot serve: a need domain or service
        type outside the vocabulary, or a service no listed provider offers."""
        problems: list[str] = []
        for domain in program.needs:
            problems += _unknown(self.vocabulary.need_domains.canonical, domain)
        offered = {s for p in self.providers.values() for s in p.services}
        for service in program.services:
            if found := _unknown(self.vocabulary.service_types.canonical, service):
                problems += found
            elif self.vocabulary.service_types.canonical(service) not in offered:
                problems.append(f"no provider offers {service}")
        return problems


def _unknown(canonical: Callable[[str], str], term: str) -> list[str]:
    try:
        canonical(term)
    except Rejected as refused:
        return [refused.message]
    return []


class DirectoryError(ValueError):
    """A directory file that cannot be used; the message names the file and field."""


def load_directory(folder: Path) -> Directory:
    providers: dict[str, Provider] = {}
    staff: dict[str, Person] = {}
    domain = "casework.invalid"
    for path in (folder / "providers.toml", folder / "staff.toml"):
        if not path.exists():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            for raw in data.get("provider", []):
                p = Provider.model_validate(raw)
                providers[p.id] = p
            for raw in data.get("person", []):
                person = Person.model_validate(raw)
                staff[person.id] = person
            domain = data.get("email_domain", domain)
        except tomllib.TOMLDecodeError as exc:
            raise DirectoryError(f"{path}: not valid TOML: {exc}") from exc
        except ValidationError as exc:
            problems = explain(exc.errors())
            raise DirectoryError(f"{path}: {problems}") from exc
    try:
        vocabulary = load_vocabulary(folder)
    except VocabularyError as exc:
        raise DirectoryError(str(exc)) from exc
    providers = {
        key: _in_vocabulary(p, vocabulary, folder / "providers.toml") for key, p in providers.items()
    }
    return Directory(providers=providers, staff=staff, staff_email_domain=domain, vocabulary=vocabulary)


def _in_vocabulary(provider: Provider, vocabulary: Vocabulary, path: Path) -> Provider:
    """The provider with its services in slug form; an unknown service is the file's error."""
    try:
        services = frozenset(vocabulary.service_types.canonical(s) for s in provider.services)
    except Rejected as refused:
        raise DirectoryError(f"{path}: provider {provider.id}: {refused.message}") from None
    return provider.model_copy(update={"services": services})
