"""The README's figures are the artefacts' figures: its results and lung blocks are rendered from docs/*.json."""

from __future__ import annotations

import json

from bench.readme_results import END, README, RESULTS_FILE, START, render


def test_readme_results_block_matches_the_recorded_run() -> None:
    text = README.read_text()
    block = text[text.index(START) : text.index(END) + len(END)]
    assert block == render(json.loads(RESULTS_FILE.read_text())), "run `make results` after `make train`"


def test_readme_lung_block_matches_the_recorded_report() -> None:
    from bench import lungs

    text = README.read_text()
    block = text[text.index(lungs.START) : text.index(lungs.END) + len(lungs.END)]
    assert block == lungs.render(json.loads(lungs.RESULTS_FILE.read_text())), "run `make lungs-report`"


def test_readme_quality_block_matches_the_yardstick() -> None:
    from bench import quality

    text = README.read_text()
    block = text[text.index(quality.START) : text.index(quality.END) + len(quality.END)]
    result = json.loads((quality.RESULTS_DIR / "quality.json").read_text())
    assert block == quality.readme_block(result), "run `make quality`"
