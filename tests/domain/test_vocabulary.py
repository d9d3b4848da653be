"""The vocabulary is data (directory/vocabulary.toml over casework's stock terms): what a case
may be described in is checked where input enters, and a deployment may add, never remove."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain import commands as c
from domain.commands import CompleteAssessment, Refer, SubmitPlan
from domain.directory import DirectoryError, load_directory
from domain.errors import Refusal, Rejected
from domain.models import Assessment, Goal, Need, NeedDomain, RiskLevel, ServiceType
from domain.policy import load_programs
from domain.vocabulary import STOCK, VocabularyError, load_vocabulary
from tests.scenario import ALICE, ROOT

SHIPPED = load_directory(ROOT / "directory")


def assess(*needs: str) -> CompleteAssessment:
    return CompleteAssessment(actor=ALICE, assessment=Assessment(needs=list(needs), risk=RiskLevel.HIGH))


def test_every_self_sufficiency_matrix_domain_is_known() -> None:
    ssm = [
        "housing", "employment", "income", "food", "childcare", "children_education", "adult_education",
        "health_care", "life_skills", "family_relations", "transport", "community_involvement",
        "parenting", "legal", "mental_health", "substance_use", "safety", "disabilities",
    ]  # fmt: skip
    checked = SHIPPED.vocabulary.check_command(assess(*(f"{d}:2/5" for d in ssm)))
    assert isinstance(checked, CompleteAssessment)
    assert {n.domain for n in checked.assessment.needs} == set(NeedDomain)


def test_an_unknown_need_domain_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(Rejected) as refused:
        SHIPPED.vocabulary.check_command(assess("housing:1/5", "astrology:1/5"))
    assert refused.value.kind is Refusal.VALIDATION
    assert refused.value.message.startswith("unknown need domain 'astrology' (known: adult_education, ")
    assert "substance_use" in refused.value.message


def test_aliases_become_the_terms_slug_in_needs_goals_and_referrals() -> None:
    vocabulary = SHIPPED.vocabulary
    checked = vocabulary.check_command(assess("health_care:2/5"))
    assert isinstance(checked, CompleteAssessment) and checked.assessment.needs[0].domain == "health"
    goal = Goal(id="g1", description="Work", objective="job", target_date="2027-01-01", domain="work")
    plan = vocabulary.check_command(SubmitPlan(actor=ALICE, goals=[goal]))
    assert isinstance(plan, SubmitPlan) and plan.goals[0].domain == "employment"
    refer = Refer(actor=ALICE, provider="safe-haven", service="counselling", reason="trauma counselling")
    assert SHIPPED.check_referral(refer).service == ServiceType.COUNSELING


def test_needs_are_scored_on_the_ssm_scale_and_old_severities_still_read() -> None:
    crisis = Need.model_validate("housing:1/5:evicted in May")
    assert (crisis.domain, crisis.score, crisis.severity, crisis.notes) == ("housing", 1, 3, "evicted in May")
    assert Need.model_validate({"domain": "income", "score": 4}).severity == 0
    recorded_before = Need.model_validate({"domain": "housing", "severity": 3, "notes": ""})
    assert recorded_before.score is None and recorded_before.severity == 3
    assert Need.model_validate("legal:2").severity == 2  # the old text form: severity 0-3
    assert Need.model_validate(crisis.model_dump(mode="json")) == crisis  # as events store it
    with pytest.raises(ValueError, match="less than or equal to 5"):
        Need.model_validate("housing:6/5")
    with pytest.raises(ValueError, match="does not match SSM score"):
        Need.model_validate({"domain": "housing", "score": 5, "severity": 3})


@pytest.mark.parametrize("score", [{"nested": {}}, [1], "high", True, 2.5])
def test_a_score_that_is_not_a_number_is_refused_as_bad_input_not_a_crash(score: object) -> None:
    """The API's fuzzing sent a JSON object as a score: a validation error, never a server error."""
    with pytest.raises(ValueError, match="score"):
        Need.model_validate({"domain": "housing", "score": score})


def test_a_deployment_may_add_a_service_type_and_its_providers(tmp_path: Path) -> None:
    (tmp_path / "vocabulary.toml").write_text(
        '[[service_type]]\nslug = "pet_fostering"\nlabel = "Pet fostering"\naliases = ["pets"]\n'
    )
    (tmp_path / "providers.toml").write_text(
        '[[provider]]\nid = "paws"\nname = "Paws Foster Network"\nservices = ["pets", "housing"]\n'
        'channel = { kind = "email", address = "help@paws.example.org" }\n'
    )
    directory = load_directory(tmp_path)
    assert directory.providers["paws"].services == {"pet_fostering", "housing"}
    assert "counseling" in directory.vocabulary.service_types.slugs()  # stock terms stay known
    refer = Refer(actor=ALICE, provider="paws", service="pet_fostering", reason="dog while in refuge")
    assert directory.check_referral(refer).service == "pet_fostering"


def test_a_provider_offering_an_unknown_service_is_the_directory_files_error(tmp_path: Path) -> None:
    (tmp_path / "providers.toml").write_text(
        '[[provider]]\nid = "paws"\nname = "Paws"\nservices = ["pet_fostering"]\n'
        'channel = { kind = "email", address = "help@paws.example.org" }\n'
    )
    with pytest.raises(
        DirectoryError, match=r"provider paws: unknown service type 'pet_fostering' \(known: "
    ):
        load_directory(tmp_path)


def test_an_alias_cannot_take_a_terms_name(tmp_path: Path) -> None:
    (tmp_path / "vocabulary.toml").write_text(
        '[[need_domain]]\nslug = "wellbeing"\nlabel = "Wellbeing"\naliases = ["health"]\n'
    )
    with pytest.raises(VocabularyError, match="need domain 'health' names both 'health' and 'wellbeing'"):
        load_vocabulary(tmp_path)


def test_without_a_file_the_stock_vocabulary_applies(tmp_path: Path) -> None:
    assert load_vocabulary(tmp_path) == STOCK


def test_every_shipped_program_has_a_provider_for_each_service_it_names() -> None:
    programs = load_programs(ROOT / "programs")
    assert {"refuge", "recovery"} <= set(programs)
    assert {key: SHIPPED.uncovered(p) for key, p in programs.items()} == {key: [] for key in programs}
    assert {"safety_planning", "furniture", "childcare", "transport"} <= set(programs["refuge"].services)
    assert {"sober_housing", "transport_voucher", "peer_support", "psychiatric_care"} <= set(
        programs["recovery"].services
    )


def test_a_need_and_its_alias_given_together_are_one_need_given_twice() -> None:
    """The door asks its rule of the command in the vocabulary's words (service.facade._checked)."""
    vocabulary = load_directory(Path(__file__).parents[2] / "directory").vocabulary
    both = Assessment(needs=["health:2/5", "health_care:3/5"], risk=RiskLevel.LOW)
    command = vocabulary.check_command(c.CompleteAssessment(actor=ALICE, assessment=both))
    assert c.door_problem(command) == "assessment.needs: health assessed twice; give each domain once"
