"""One action catalogue: each staff action is declared once, as its command model in
domain/commands.py, and every way in is made from it (adding an action is one place)."""

from __future__ import annotations

from api.app import create_app
from cli.main import app as cli
from domain.case import _APPLY
from domain.commands import STAFF_ACTIONS, STAFF_COMMAND_TYPES
from domain.lifecycle import LIFECYCLE
from tests.integration.test_callback import DIRECTORY
from tests.terminal import KEYS


def test_every_staff_action_has_a_rule_an_effect_a_subcommand_and_a_route() -> None:
    routes = {getattr(r, "path", "") for r in create_app(None, DIRECTORY, KEYS, None).routes}  # type: ignore[arg-type]
    subcommands = {command.name for command in cli.registered_commands}
    for model in STAFF_COMMAND_TYPES:
        action = model.model_fields["action"].default
        name = action.replace("_", "-")
        assert any(rule.trigger == action for rule in LIFECYCLE), f"{action}: no lifecycle rule"
        assert model in _APPLY, f"{action}: no effect in domain/case.py's apply table"
        assert name in subcommands, f"{action}: no `casework {name}`"
        assert f"/cases/{{number}}/{name}" in routes, f"{action}: no API route"
        assert (model.__doc__ or "").strip(), f"{action}: no one-line help"
    assert len(STAFF_ACTIONS) == len(set(STAFF_ACTIONS)) == len(STAFF_COMMAND_TYPES)


def test_the_cli_builds_nested_fields_from_the_models_own_text_forms() -> None:
    """Needs and goals are written as the domain models read them (DOMAIN:SEVERITY, ID|...|date)."""
    from cli.main import _body, _parameters
    from domain.commands import CompleteAssessment, SubmitPlan

    specs = list(_parameters(CompleteAssessment))
    values = {p.name: None for p, _, _ in specs} | {
        "assessment__needs": ["housing:3:evicted", "income:1"],
        "assessment__risk": "high",
    }
    body = _body(specs, values)
    assessment = CompleteAssessment.model_validate({"actor": {"id": "a", "role": "case_manager"}, **body})
    assert [(n.domain, n.severity, n.notes) for n in assessment.assessment.needs] == [
        ("housing", 3, "evicted"),
        ("income", 1, ""),
    ]
    specs = list(_parameters(SubmitPlan))
    body = _body(specs, {p.name: None for p, _, _ in specs} | {"goals": ["g1|Home|lease signed|2027-06-01"]})
    plan = SubmitPlan.model_validate({"actor": {"id": "a", "role": "case_manager"}, **body})
    assert plan.goals[0].objective == "lease signed" and str(plan.goals[0].target_date) == "2027-06-01"
