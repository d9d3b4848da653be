"""Import a provider directory published in Open Referral HSDS into casework's directory.

The format taken is HSDS 3.0 JSON: one document with the `organizations`, `services` and
`service_at_locations` tables as arrays (services may also sit inside their organization,
as in the HSDS API's full objects), taxonomy terms attached to services as `attributes`.
3.0 is the current standard and JSON its exchange form; 1.x/2.0 CSV data packages have the
same tables and would need only a reader in front of `import_hsds`.

One organization becomes one provider: its services are the casework service types its
active services' taxonomy terms map to (`directory/hsds_taxonomy.toml`), reached by email
(the organization's, else its first service's). What cannot be imported is reported, never
guessed: services no term of which is mapped, organizations with no mapped service or no email.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from domain.directory import EmailChannel, Provider
from domain.errors import explain
from domain.models import ServiceTypeSlug


class _Hsds(BaseModel):
    model_config = ConfigDict(extra="ignore")  # HSDS has many fields casework does not use


class TaxonomyTerm(_Hsds):
    code: str | None = None
    name: str | None = None
    term: str | None = None  # HSDS 2.0's name for it


class Attribute(_Hsds):
    taxonomy_term: TaxonomyTerm | None = None


class Service(_Hsds):
    id: str
    organization_id: str | None = None
    name: str
    email: str | None = None
    status: str = "active"
    attributes: list[Attribute] = []


class Organization(_Hsds):
    id: str
    name: str
    email: str | None = None
    services: list[Service] = []


class ServiceAtLocation(_Hsds):
    service_id: str
    location_id: str | None = None


class HsdsDocument(_Hsds):
    organizations: list[Organization]
    services: list[Service] = []
    service_at_locations: list[ServiceAtLocation] = []


class Taxonomy(BaseModel):
    """HSDS taxonomy term -> service type, by code (and the codes under it), then by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codes: dict[str, ServiceTypeSlug] = {}
    names: dict[str, ServiceTypeSlug] = {}

    def service_type(self, term: TaxonomyTerm) -> ServiceTypeSlug | None:
        code = (term.code or "").strip().upper()
        matches = [k for k in self.codes if code == k or code.startswith((f"{k}-", f"{k}."))]
        if matches:
            return self.codes[max(matches, key=len)]
        name = (term.name or term.term or "").strip().lower()
        return {k.lower(): v for k, v in self.names.items()}.get(name)


class HsdsError(ValueError):
    """A file that cannot be imported; the message names the file and what is wrong."""


@dataclass
class HsdsImport:
    providers: list[Provider] = field(default_factory=list)
    locations: dict[str, int] = field(default_factory=dict)  # provider id -> how many locations
    unmapped: list[str] = field(default_factory=list)  # "organization: service (terms)"
    skipped: list[str] = field(default_factory=list)  # "organization: why"


def load_taxonomy(path: Path) -> Taxonomy:
    try:
        return Taxonomy.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        detail = explain(exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        raise HsdsError(f"{path}: {detail}") from exc


def load_hsds(path: Path) -> HsdsDocument:
    try:
        return HsdsDocument.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        detail = explain(exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        raise HsdsError(f"{path}: not an HSDS 3.0 JSON document: {detail}") from exc


def provider_id(name: str, taken: set[str]) -> str:
    """A directory id from the organization's name: 'Riverside Shelter' -> riverside-shelter."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "provider"
    found, n = base, 2
    while found in taken:
        found, n = f"{base}-{n}", n + 1
    return found


def _terms(service: Service) -> list[TaxonomyTerm]:
    return [a.taxonomy_term for a in service.attributes if a.taxonomy_term is not None]


def import_hsds(doc: HsdsDocument, taxonomy: Taxonomy) -> HsdsImport:
    services: dict[str, list[Service]] = {o.id: list(o.services) for o in doc.organizations}
    for s in doc.services:
        services.setdefault(s.organization_id or "", []).append(s)
    locations: dict[str, set[str]] = {}
    for sal in doc.service_at_locations:
        locations.setdefault(sal.service_id, set()).add(sal.location_id or sal.service_id)
    result, taken = HsdsImport(), set[str]()
    for org in doc.organizations:
        active = [s for s in services.get(org.id, []) if s.status == "active"]
        offered: set[ServiceTypeSlug] = set()
        for s in active:
            mapped = {t for term in _terms(s) if (t := taxonomy.service_type(term))}
            if not mapped:
                names = ", ".join(t.code or t.name or t.term or "?" for t in _terms(s)) or "no terms"
                result.unmapped.append(f"{org.name}: {s.name} ({names})")
            offered |= mapped
        email = org.email or next((s.email for s in active if s.email), None)
        if not offered:
            result.skipped.append(f"{org.name}: no service maps to a casework service type")
            continue
        if not email:
            result.skipped.append(f"{org.name}: no email to send referrals to")
            continue
        pid = provider_id(org.name, taken)
        try:
            provider = Provider(
                id=pid,
                name=org.name,
                services=frozenset(offered),
                channel=EmailChannel(address=email),
                callback_secret_env=f"CASEWORK_SECRET_{pid.upper().replace('-', '_')}",
            )
        except ValidationError as exc:
            result.skipped.append(f"{org.name}: {explain(exc.errors())}")
            continue
        taken.add(pid)
        result.providers.append(provider)
        result.locations[pid] = len(set().union(*(locations.get(s.id, set()) for s in active)))
    return result


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def providers_toml(found: HsdsImport, source: str) -> str:
    """The providers as directory/providers.toml has them (load_directory reads it back)."""
    lines = [
        f"# Providers imported from {source} (Open Referral HSDS) by casework import-hsds.",
        "# Each answers at the callback with the secret in callback_secret_env, or by FHIR with an API key.",
    ]
    for p in found.providers:
        services = ", ".join(_toml_string(s) for s in sorted(p.services))
        channel: dict[str, Any] = p.channel.model_dump(mode="json")
        lines += [
            "",
            f"# {found.locations.get(p.id, 0)} location(s) in the source",
            "[[provider]]",
            f"id = {_toml_string(p.id)}",
            f"name = {_toml_string(p.name)}",
            f"services = [{services}]",
            f"callback_secret_env = {_toml_string(p.callback_secret_env or '')}",
            f'channel = {{ kind = "email", address = {_toml_string(channel["address"])} }}',
        ]
    return "\n".join(lines) + "\n"
