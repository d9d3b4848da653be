"""A caseworker's terminal session: `casework dev` in one window, `casework ...` in another."""

from __future__ import annotations

import email
import email.policy
import json
import time
from email.message import EmailMessage
from pathlib import Path

import httpx

from activities.signing import PROVIDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.e2e.conftest import LEGAL_AID_SECRET
from tests.processes import casework, environment, free_port


def ok(*args: str, env: dict[str, str]) -> str:
    done = casework(*args, env=env)
    assert done.returncode == 0, f"casework {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return done.stdout


def refused(*args: str, env: dict[str, str]) -> str:
    done = casework(*args, env=env)
    assert done.returncode == 1, f"casework {' '.join(args)} should fail: {done.stdout}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"an error is one line, got: {done.stderr}"
    return lines[0]


def test_a_case_from_the_terminal(stack: dict[str, str], tmp_path: Path) -> None:
    alice = stack | {"CASEWORK_ACTOR": "alice:case_manager"}
    sam = stack | {"CASEWORK_ACTOR": "sam:supervisor"}
    client = tmp_path / "client.json"
    client.write_text(
        json.dumps(
            {"given_name": "Amina", "family_name": "Haddad", "birth_date": "1990-02-14", "phone": "555-0199"}
        )
    )
    opened = json.loads(
        ok(
            "open",
            "--program",
            "housing",
            "--client-json",
            str(client),
            "--supervisor",
            "sam",
            "--json",
            env=alice,
        )
    )
    number = opened["case"]["number"]
    assert opened["case"]["stage"] == "intake" and opened["case"]["manager"] == "alice"

    ok("accept", number, "--note", "referred by the refuge", env=alice)
    ok(
        "assess",
        number,
        "--need",
        "safety:3",
        "--need",
        "housing:3",
        "--need",
        "legal:2",
        "--risk",
        "high",
        "--strength",
        "motivated",
        env=alice,
    )
    ok(
        "submit-plan",
        number,
        "--goal",
        "g1|Safety plan in place|plan signed|2027-01-15",
        "--goal",
        "g2|Own tenancy|lease signed|2027-06-01",
        env=alice,
    )
    assert "high-risk plan needs a supervisor" in refused("approve-plan", number, env=alice)
    ok("approve-plan", number, "--note", "safety first", env=sam)
    assert "has not consented" in refused(
        "refer",
        number,
        "--provider",
        "legal-aid-east",
        "--service",
        "legal_aid",
        "--reason",
        "protection order hearing",
        env=alice,
    )
    ok("consent", number, "--share", "name", "--share", "contact", "--note", "signed form", env=alice)
    assert "does not offer housing" in refused(
        "refer",
        number,
        "--provider",
        "legal-aid-east",
        "--service",
        "housing",
        "--reason",
        "protection order hearing",
        env=alice,
    )
    ok(
        "refer",
        number,
        "--provider",
        "legal-aid-east",
        "--service",
        "legal_aid",
        "--reason",
        "protection order hearing",
        env=alice,
    )
    ok("start-monitoring", number, env=alice)
    ok("suspend", number, "--reason", "client staying with family out of town", env=alice)
    ok("resume", number, env=alice)
    ok("follow-up", number, "--summary", "safe, attending court", env=alice)

    shown = ok("show", number, env=alice)
    for fact in ("Amina Haddad", "monitoring", "alice", "high", "Safety plan in place", "legal-aid-east"):
        assert fact in shown
    history = json.loads(ok("history", number, "--json", env=alice))
    assert [e["change"]["action"] for e in history][:4] == [
        "open",
        "accept",
        "complete_assessment",
        "submit_plan",
    ]
    assert all(e["change"]["actor"]["id"] in {"alice", "sam", "casework"} for e in history)

    listed = ok("list", "--stage", "monitoring", env=alice)
    assert number in listed  # the dev server's visibility is immediate for one case

    # the referral reached the provider's inbox (the dev stack's mail sink), without the name in the subject
    request = wait_for_mail(Path(stack["MAIL"]), f"Referral request {number}/")
    assert request["To"] == "referrals@legal-aid-east.example.org"
    assert "Amina" not in request["Subject"] and "Haddad" not in request["Subject"]
    text = request.get_content()
    assert "name: Amina Haddad" in text and "1990-02-14" not in text  # the birth date was not consented
    assert f"at {stack['API']}/callbacks/referrals" in text

    # the provider answers through the signed callback, and the case shows it
    referral = json.loads(ok("show", number, "--json", env=alice))["case"]["referrals"][0]["id"]
    body = json.dumps({"case": number, "referral": referral, "answer": "accepted"}).encode()
    stamp = str(int(time.time()))
    answered = httpx.post(
        f"{stack['API']}/callbacks/referrals",
        content=body,
        headers={
            PROVIDER_HEADER: "legal-aid-east",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature(LEGAL_AID_SECRET, stamp, body),
            "Content-Type": "application/json",
        },
    )
    assert answered.status_code == 200, answered.text
    assert json.loads(ok("show", number, "--json", env=alice))["case"]["referrals"][0]["status"] == "accepted"


def wait_for_mail(folder: Path, subject: str, within: float = 20) -> EmailMessage:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if subject in str(message["Subject"]):
                return message
        time.sleep(0.2)
    raise AssertionError(f"no mail with {subject!r} in its subject in {folder}")


def test_errors_are_one_clear_line(stack: dict[str, str]) -> None:
    alice = stack | {"CASEWORK_ACTOR": "alice:case_manager"}
    assert refused("accept", "NO-SUCH-CASE", env=alice) == "error: not found: no case NO-SUCH-CASE"
    assert "who is acting?" in refused("accept", "X-1", env=stack)
    assert "ROLE one of" in refused("accept", "X-1", "--as", "alice:wizard", env=stack)
    assert "unknown program 'nope'" in refused(
        "open", "--program", "nope", "--given-name", "A", "--family-name", "B", env=alice
    )
    assert (
        refused("open", "--family-name", "B", env=alice) == "error: invalid input: given_name: Field required"
    )
    assert "--reason is required" in refused("decline", "X-1", env=alice)
    assert "expected DOMAIN:SEVERITY" in refused(
        "assess", "X-1", "--need", "housing", "--risk", "low", env=alice
    )
    number = json.loads(ok("open", "--given-name", "Ana", "--family-name", "B", "--json", env=alice))["case"][
        "number"
    ]
    assert refused("start-monitoring", number, env=alice) == (
        "error: invalid transition: cannot start_monitoring a case in intake (only from: coordination)"
    )
    assert "managed by alice, not bob" in refused("accept", number, "--as", "bob:case_manager", env=stack)
    assert "accept.note: Input should be a valid string" in refused(
        "act", number, '{"action": "accept", "note": 5}', env=alice
    )
    ok("act", number, '{"action": "accept", "note": "via JSON"}', env=alice)


def test_cannot_reach_temporal_says_so(tmp_path: Path) -> None:
    env = environment(temporal_address=f"127.0.0.1:{free_port()}")
    line = refused("show", "X-1", env=env)
    assert "cannot reach Temporal" in line and "casework dev" in line


def test_programs_are_listed(stack: dict[str, str]) -> None:
    out = ok("programs", env=stack)
    assert "general" in out and "housing" in out


def test_demo_cases_feed_the_list_and_the_report(stack: dict[str, str], tmp_path: Path) -> None:
    done = ok("demo", "--cases", "5", "--seed", "3", env=stack)
    assert "opened 5 demo cases" in done
    listed = json.loads(ok("list", "--json", env=stack))
    assert len(listed) >= 5
    refuge = next(r for r in listed if r["program"] == "housing" and r["stage"] == "monitoring")
    shown = ok("show", refuge["number"], env=stack)
    for fact in ("Amina Haddad", "Protection order", "legal-aid-east", "city-counselling", "home_visit"):
        assert fact in shown
    report = ok("report", "--csv", str(tmp_path / "csv"), "--chart", str(tmp_path / "stages.png"), env=stack)
    assert "Open caseload by manager and stage" in report and "Overdue items" in report
    assert (tmp_path / "csv" / "caseload.csv").read_text().startswith("manager,stage,cases")
    assert (tmp_path / "stages.png").read_bytes()[:4] == b"\x89PNG"
