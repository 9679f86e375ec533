"""The pages' figures are the artefacts' figures: each generated block of the README and docs/ equals a fresh
rendering of the JSON artefact it names, and no three-decimal figure is typed by hand around them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import scoring
from pages import audit, lungs, quality, results
from pages.blocks import DOCS, README, Block
from study import guard_size, inside, lung_finder

BLOCKS = (results.BLOCK, lungs.BLOCK, lung_finder.BLOCK, quality.BLOCK, audit.BLOCK, audit.PLANTED, guard_size.BLOCK,
          scoring.BLOCK, inside.BLOCK)  # fmt: skip
PAGES = (README, *sorted(DOCS.glob("*.md")))
MEASURED = re.compile(r"\b\d\.\d{3}\b")  # how the pages write a measured ROC AUC, Dice or ECE


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_generated_block_matches_its_artefact(block: Block) -> None:
    assert block.on_page() == block.render(), f"run `{block.command}` to render {block.page.name} again"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_measured_figure_outside_a_generated_block(page: Path) -> None:
    text = page.read_text()
    for block in BLOCKS:
        if block.page == page:
            text = text.replace(block.on_page(), "")
    assert not MEASURED.findall(text), f"{page.name}: a figure typed by hand; render it from an artefact"


def test_a_drifted_block_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    block = Block("demo", page, quality.BLOCK.source, quality.BLOCK.command, quality.BLOCK.body)
    page.write_text(f"before\n{block.start}\n{block.end}\nafter\n")
    block.write()
    assert block.on_page() == block.render() and page.read_text().startswith("before\n")
    page.write_text(page.read_text().replace("ROC AUC 0.", "ROC AUC 1.", 1))
    assert block.on_page() != block.render()


def test_the_audit_page_shows_n_a_for_a_model_whose_strata_were_not_measured() -> None:
    """Beside a model with projection, sex and age figures, one whose data recorded none (audit.json's "strata"
    null) gets n/a in its column, whichever column it is in."""
    measured = next(iter(json.loads(audit.BLOCK.source.read_text())["audits"].values()))
    unmeasured = measured | {"strata": None, "projection_probe": None}
    for audits in ({"none": unmeasured, "some": measured}, {"some": measured, "none": unmeasured}):
        rows = audit.inside_rows(audits)
        column = list(audits).index("none") + 1
        assert rows and all(row[column] == "n/a" for row in rows)
        assert all(row[3 - column] != "n/a" for row in rows)
