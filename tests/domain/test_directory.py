"""A referral must fit the provider directory (domain/directory.py `check_referral`): the
provider exists and offers the service; its own response time applies unless one is set."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.commands import Refer
from domain.directory import Directory, EmailChannel, Provider
from domain.errors import Refusal, Rejected
from domain.models import ServiceType
from tests.scenario import ALICE

DIRECTORY = Directory(
    providers={
        "shelter-north": Provider(
            id="shelter-north",
            name="North Emergency Shelter",
            services=frozenset({ServiceType.HOUSING}),
            channel=EmailChannel(address="intake@shelter-north.example.org"),
            response_time=timedelta(days=1),
        ),
        "legal-aid-east": Provider(
            id="legal-aid-east",
            name="East Legal Aid Centre",
            services=frozenset({ServiceType.LEGAL_AID}),
            channel=EmailChannel(address="referrals@legal-aid-east.example.org"),
        ),
    }
)


def referral(provider: str, service: ServiceType, respond_within: timedelta | None = None) -> Refer:
    return Refer(
        actor=ALICE, provider=provider, service=service, reason="needs a bed", respond_within=respond_within
    )


def test_a_referral_to_no_listed_provider_is_refused_naming_the_providers() -> None:
    with pytest.raises(Rejected) as refused:
        DIRECTORY.check_referral(referral("nobody", ServiceType.HOUSING))
    assert refused.value.kind is Refusal.VALIDATION
    assert refused.value.message == "unknown provider 'nobody' (known: legal-aid-east, shelter-north)"


def test_a_referral_for_a_service_the_provider_does_not_offer_is_refused() -> None:
    with pytest.raises(Rejected) as refused:
        DIRECTORY.check_referral(referral("legal-aid-east", ServiceType.HOUSING))
    assert refused.value.kind is Refusal.VALIDATION
    assert refused.value.message == "legal-aid-east does not offer housing (offers: legal_aid)"


def test_the_providers_response_time_applies_unless_the_referral_sets_one() -> None:
    checked = DIRECTORY.check_referral(referral("shelter-north", ServiceType.HOUSING))
    assert checked.respond_within == timedelta(days=1)
    mine = DIRECTORY.check_referral(referral("shelter-north", ServiceType.HOUSING, timedelta(hours=4)))
    assert mine.respond_within == timedelta(hours=4)
    plain = referral("legal-aid-east", ServiceType.LEGAL_AID)
    assert DIRECTORY.check_referral(plain) == plain  # no response time of its own: the program's applies


def test_an_empty_directory_knows_no_provider() -> None:
    with pytest.raises(Rejected, match=r"unknown provider 'shelter-north' \(known: none\)"):
        Directory().check_referral(referral("shelter-north", ServiceType.HOUSING))
