"""The README's lifecycle diagram is the table's: drawn by `diagram()`, never by hand."""

from __future__ import annotations

from pathlib import Path

from domain.lifecycle import LIFECYCLE, diagram

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_diagram() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("```mermaid\n") + len("```mermaid\n")
    return text[start : text.index("```", start)]


def test_the_readme_shows_the_tables_diagram() -> None:
    assert readme_diagram() == diagram(), "redraw it: print(domain.lifecycle.diagram())"


def test_every_row_that_moves_a_case_is_drawn_but_withdraw() -> None:
    drawn = diagram()
    for r in LIFECYCLE:
        if r.dest is not None and r.trigger != "withdraw":
            for source in r.sources:
                assert f"{source} --> {r.dest}: " in drawn and r.trigger in drawn
