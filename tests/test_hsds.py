"""An Open Referral HSDS directory becomes casework providers: services mapped, channels from emails."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.hsds import TaxonomyTerm, import_hsds, load_hsds, load_taxonomy
from cli.main import app
from domain.directory import EmailChannel, load_directory
from domain.models import ServiceType

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "hsds" / "sample.json"
TAXONOMY = load_taxonomy(ROOT / "directory" / "hsds_taxonomy.toml")


def test_an_hsds_directory_imports_as_providers_reached_by_email() -> None:
    found = import_hsds(load_hsds(SAMPLE), TAXONOMY)

    providers = {p.id: p for p in found.providers}
    assert set(providers) == {"riverside-shelter", "community-legal-centre"}
    shelter = providers["riverside-shelter"]
    # an inactive service (the day centre's transport) is not offered
    assert shelter.services == {ServiceType.HOUSING, ServiceType.INCOME_BENEFITS}
    assert shelter.channel == EmailChannel(address="intake@riverside.example.org")
    # no email of its own: reached at its service's
    assert providers["community-legal-centre"].channel == EmailChannel(
        address="advice@legal-centre.example.org"
    )
    assert found.locations == {"riverside-shelter": 1, "community-legal-centre": 2}

    assert found.unmapped == ["Hilltop Food Pantry: Weekly food parcels (Food Pantry)"]
    assert found.skipped == [
        "Hilltop Food Pantry: no service maps to a casework service type",
        "Quiet Counselling: no email to send referrals to",
    ]


def test_a_term_maps_by_its_code_and_the_codes_under_it_then_by_name() -> None:
    assert (
        TAXONOMY.service_type(TaxonomyTerm(code="BH-1800.1500", name="Domestic Violence Shelters"))
        == "housing"
    )
    assert TAXONOMY.service_type(TaxonomyTerm(code="FT-3000")) == ServiceType.LEGAL_AID
    assert TAXONOMY.service_type(TaxonomyTerm(name="Mental Health Care")) == ServiceType.MENTAL_HEALTH
    assert TAXONOMY.service_type(TaxonomyTerm(code="BHX", name="Food")) is None


def test_the_operator_command_writes_a_directory_casework_reads(tmp_path: Path) -> None:
    out = tmp_path / "providers.toml"

    done = CliRunner().invoke(app, ["import-hsds", str(SAMPLE), "--out", str(out)])

    assert done.exit_code == 0, done.output
    assert "imported 2 providers" in done.output
    assert "unmapped service: Hilltop Food Pantry: Weekly food parcels" in done.output
    assert "skipped: Quiet Counselling: no email" in done.output
    directory = load_directory(tmp_path)
    assert set(directory.providers) == {"riverside-shelter", "community-legal-centre"}
    assert directory.providers["riverside-shelter"].answer_secret_env == "CASEWORK_SECRET_RIVERSIDE_SHELTER"

    again = CliRunner().invoke(app, ["import-hsds", str(SAMPLE), "--out", str(out)])
    assert again.exit_code != 0 and "--replace" in str(again.exception)  # main() prints it as one line
