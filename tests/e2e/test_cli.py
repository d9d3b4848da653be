"""A caseworker's terminal session: `casework dev` in one window, `casework ...` in another."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx

from activities.signing import PROVIDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.e2e.conftest import LEGAL_AID_SECRET
from tests.processes import CASEWORK, casework, environment, free_port


def ok(*args: str, env: dict[str, str]) -> str:
    done = casework(*args, env=env)
    assert done.returncode == 0, f"casework {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return done.stdout


def listed_when(ready: Callable[[str], bool], *args: str, env: dict[str, str], within: float = 15) -> str:
    """The output of `casework ARGS` once it is `ready`: lists read the record, which a case's
    workflow writes a moment after each step."""
    deadline = time.monotonic() + within
    while not ready(out := ok(*args, env=env)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return out


def refused(*args: str, env: dict[str, str], code: int | None = None) -> str:
    """The one line a refused command prints (and, when given, its exit code)."""
    done = casework(*args, env=env)
    assert done.returncode != 0, f"casework {' '.join(args)} should fail: {done.stdout}"
    assert code is None or done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"an error is one line, got: {done.stderr}"
    return lines[0]


def test_a_case_from_the_terminal(stack: dict[str, str], tmp_path: Path) -> None:
    alice = stack | {"CASEWORK_API_KEY": "dev-alice"}
    sam = stack | {"CASEWORK_API_KEY": "dev-sam"}
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
        "complete-assessment",
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
    ok("record-consent", number, "--share", "name", "--share", "contact", "--note", "signed form", env=alice)
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
    ok("record-follow-up", number, "--summary", "safe, attending court", env=alice)

    shown = ok("show", number, env=alice)
    assert ok("show", number.lower(), env=alice) == shown  # typed in lower case, the same case
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

    listed = listed_when(lambda out: number in out, "list", "--stage", "monitoring", env=alice)
    assert number in listed

    # the referral reached the provider's inbox (the dev stack's mail sink), without the name in the subject
    request = wait_for_mail(Path(stack["MAIL"]), f"Referral request {number}/")
    assert request["To"] == "referrals@legal-aid-east.example.org"
    assert "Amina" not in request["Subject"] and "Haddad" not in request["Subject"]
    text = request.get_content()
    assert "Name: Amina Haddad" in text and "1990-02-14" not in text  # the birth date was not consented
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

    # what the stack keeps of the client is for its owner only
    var = Path(stack["CASEWORK_VAR_DIR"])
    assert var.stat().st_mode & 0o777 == 0o700
    kept = [var / "casework.db", var / "temporal.db", var / "payload.key", *Path(stack["MAIL"]).glob("*.eml")]
    assert {str(p): p.stat().st_mode & 0o777 for p in kept} == {str(p): 0o600 for p in kept}


def wait_for_mail(folder: Path, subject: str, within: float = 20) -> EmailMessage:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if subject in str(message["Subject"]):
                return message
        time.sleep(0.2)
    raise AssertionError(f"no mail with {subject!r} in its subject in {folder}")


def test_errors_are_one_clear_line_with_the_refusals_exit_code(stack: dict[str, str]) -> None:
    alice, bob = stack | {"CASEWORK_API_KEY": "dev-alice"}, stack | {"CASEWORK_API_KEY": "dev-bob"}
    assert refused("accept", "NO-SUCH-CASE", env=alice, code=3) == "error: not found: no case NO-SUCH-CASE"
    for mistyped in ("../me", "", ".."):  # never put into a URL: bad input, not "not found"
        assert "is not a case number" in refused("show", mistyped, env=alice, code=2)
    assert "is not a case number" in refused("add-note", "a/b", "--text", "hi", env=alice, code=2)
    assert "unknown program 'nope'" in refused(
        "open", "--program", "nope", "--given-name", "A", "--family-name", "B", env=alice, code=2
    )
    assert refused("open", "--family-name", "B", env=alice, code=2) == (
        "error: validation: client.given_name: Field required"
    )
    unborn = ("open", "--given-name", "A", "--family-name", "B", "--birth-date", "2090-01-01")
    assert refused(*unborn, env=alice, code=2) == (
        "error: validation: client.birth_date: 2090-01-01 is still to come"
    )
    no_number = ("open", "--given-name", "A", "--family-name", "B", "--phone", "call her mum")
    assert refused(*no_number, env=alice, code=2).startswith(
        "error: validation: client.phone: 'call her mum' is not a phone number"
    )
    assert "Missing option '--reason'" in refused("decline", "X-1", env=alice, code=2)
    assert "expected DOMAIN:SCORE/5" in refused(
        "complete-assessment", "X-1", "--need", "housing", "--risk", "low", env=alice, code=2
    )
    number = json.loads(ok("open", "--given-name", "Ana", "--family-name", "B", "--json", env=alice))["case"][
        "number"
    ]
    assert refused("start-monitoring", number, env=alice, code=5) == (
        "error: invalid transition: cannot start_monitoring a case in intake (only from: coordination)"
    )
    assert "not found: no case" in refused("accept", number, env=bob, code=3)  # not bob's: not shown to him
    blank = refused("add-note", number, "--text", "   ", env=alice, code=2)
    assert "phone: 'ask mum' is not a phone number" in refused(
        "update-contact", number, "--phone", "ask mum", env=alice, code=2
    )
    assert "text: write something, not only spaces" in blank
    assert "note: Input should be a valid string" in refused(
        "act", number, '{"action": "accept", "note": 5}', env=alice, code=2
    )
    ok("act", number, '{"action": "accept", "note": "via JSON"}', env=alice)


def test_the_cli_never_chooses_who_acts(stack: dict[str, str], tmp_path: Path) -> None:
    """No credential, a made-up one, or a role on the command line: refused, nothing opened."""
    nobody = dict(stack)
    assert "not signed in: run `casework login`" in refused("list", env=nobody, code=4)
    forged = stack | {"CASEWORK_API_KEY": "dev-mallory"}
    assert "unauthenticated: unknown API key" in refused(
        "open", "--given-name", "Eve", "--family-name", "X", env=forged, code=4
    )
    assert "No such option: --as" in refused(
        "list", "--as", "alice:supervisor", env=stack | {"CASEWORK_API_KEY": "dev-alice"}
    )
    assert "Eve" not in ok("list", "--json", env=stack | {"CASEWORK_API_KEY": "dev-sam"})

    # casework login checks the key, keeps it for this user only, and the CLI then uses it
    saved = stack | {"CASEWORK_CREDENTIALS_FILE": str(tmp_path / "cred" / "credentials.json")}
    bad = subprocess.run(
        [CASEWORK, "login"], input="dev-mallory\n", env=saved, capture_output=True, text=True
    )
    assert bad.returncode == 4 and "unknown API key" in bad.stderr
    assert not (tmp_path / "cred" / "credentials.json").exists()
    good = subprocess.run([CASEWORK, "login"], input="dev-sam\n", env=saved, capture_output=True, text=True)
    assert good.returncode == 0 and "as sam (supervisor)" in good.stdout, good.stderr
    assert (tmp_path / "cred" / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert ok("whoami", env=saved).strip() == "sam (supervisor)"
    # an empty CASEWORK_API_KEY (a script's unset variable) is no key: the saved sign-in counts
    assert ok("whoami", env=saved | {"CASEWORK_API_KEY": ""}).strip() == "sam (supervisor)"
    assert "not signed in" in refused("whoami", env=nobody | {"CASEWORK_API_KEY": " "}, code=4)
    ok("logout", env=saved)
    assert "not signed in" in refused("whoami", env=saved, code=4)


def test_cannot_reach_the_api_says_so(tmp_path: Path) -> None:
    env = environment(api_url=f"http://127.0.0.1:{free_port()}", api_key="dev-alice")
    line = refused("show", "X-1", env=env, code=6)
    assert "cannot reach the casework API" in line and "casework dev" in line


def test_programs_are_listed_as_the_deployment_runs_them(stack: dict[str, str], tmp_path: Path) -> None:
    """From the API, not a local folder: this terminal's programs folder is empty."""
    elsewhere = stack | {"CASEWORK_API_KEY": "dev-alice", "CASEWORK_PROGRAMS_DIR": str(tmp_path)}
    out = ok("programs", env=elsewhere)
    assert "general" in out and "housing" in out
    assert "not signed in" in refused("programs", env=stack | {"CASEWORK_API_KEY": ""}, code=4)


def test_demo_cases_feed_the_list_and_the_report(stack: dict[str, str], tmp_path: Path) -> None:
    done = ok("demo", "--cases", "5", "--seed", "3", env=stack)  # an operator's command: no sign-in
    stack = stack | {"CASEWORK_API_KEY": "dev-sam"}  # the demo cases' supervisor
    assert "opened 5 demo cases" in done

    def refuge_in_monitoring(out: str) -> bool:
        return any(r["program"] == "refuge" and r["stage"] == "monitoring" for r in json.loads(out))

    listed = json.loads(listed_when(refuge_in_monitoring, "list", "--json", env=stack))
    assert len(listed) >= 5
    refuge = next(r for r in listed if r["program"] == "refuge" and r["stage"] == "monitoring")
    shown = ok("show", refuge["number"], env=stack)
    for fact in ("Amina Haddad", "Protection order", "safe-haven", "legal-aid-east", "home_visit"):
        assert fact in shown
    report = ok("report", "--csv", str(tmp_path / "csv"), "--chart", str(tmp_path / "stages.png"), env=stack)
    assert "Open caseload by manager and stage" in report and "Overdue items" in report
    assert (tmp_path / "csv" / "caseload.csv").read_text().startswith("manager,stage,cases")
    assert (tmp_path / "stages.png").read_bytes()[:4] == b"\x89PNG"


def test_what_people_type_is_printed_as_they_typed_it(stack: dict[str, str]) -> None:
    """Square brackets are text: a note like this one made every later read of the case fail
    (Rich took it for markup), and a refusal quoting "[assessment]" lost it."""
    alice = stack | {"CASEWORK_API_KEY": "dev-alice"}
    opened = ok(
        "open",
        "--given-name",
        "[red]Ana",
        "--family-name",
        "B[/]",
        "--phone",
        "555-0101",
        "--json",
        env=alice,
    )
    number = json.loads(opened)["case"]["number"]
    ok("update-contact", number, "--email", "ana@example.org", "--note", "she gave her email", env=alice)
    text = "called [mother] re: [/b] housing [bold red]urgent[/]"
    ok("--key", "bracket-note-01", "add-note", number, "--text", text, env=alice)
    assert text in ok("notes", number, env=alice)
    shown = ok("show", number, env=alice)
    assert text in shown and "[red]Ana B[/]" in shown
    assert "555-0101 · ana@example.org" in shown  # the contact details, the email given after opening
    reused = refused("--key", "bracket-note-01", "add-note", number, "--text", "other", env=alice, code=5)
    assert reused.startswith("error: conflict: ") and "[intake])" in reused
