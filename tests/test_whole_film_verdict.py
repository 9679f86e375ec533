"""The whole-film study's decisions follow the rules it was set: padding replaces squashing only with a gain on
every dealing, and lungs first becomes the default (and the headline a card may quote) only when its fine-tune
change is positive on at least three fold dealings and the source reads less well from its features (fast tier:
the rule, on made-up changes); the yardstick's page says so when its rows framed the film otherwise than the
default now does."""

from __future__ import annotations

import json

from covid_cxr.data.processor_size import WHOLE_FILM
from study.quality_markdown import render
from study.whole_film import (
    LUNGS_FIRST,
    LUNGS_FIRST_TUNE,
    PADDED,
    SQUASHED,
    STUDY_DIR,
    WHOLE_FILM_TUNE,
    default_finetune,
    verdict,
)


def dealings(row: str, baseline: str, changes: list[float], low: float = -0.01) -> dict[str, dict]:
    return {
        str(seed): {"changes": [{"row": row, "baseline": baseline, "change": c, "ci95": [low, c + 0.05]}]}
        for seed, c in zip((42, 7, 1, 2), changes, strict=False)
    }


def result(padded: list[float], probed: list[float], tuned: list[float], readout: float) -> dict:
    probes = dealings(PADDED, SQUASHED, padded)
    for seed, summary in dealings(LUNGS_FIRST, SQUASHED, probed).items():
        probes[seed]["changes"] += summary["changes"]
    return {
        "probes": probes,
        "finetunes": dealings(LUNGS_FIRST_TUNE, WHOLE_FILM_TUNE, tuned),
        "source_readout": {"centre crop": 0.68, SQUASHED: 0.75, LUNGS_FIRST: readout},
    }


def test_lungs_first_stays_an_option_below_three_fine_tuned_dealings() -> None:
    framing, lungs = verdict(result([-0.01, 0.02, 0.0, 0.01], [0.04, 0.02, 0.03, 0.01], [0.05, 0.04], 0.7))
    assert "stays" in framing and "squashed" in framing
    assert "lungs first stays an option" in lungs and "at least 3 dealings" in lungs


def test_lungs_first_is_adopted_only_when_every_dealing_agrees_and_the_shortcut_weakens() -> None:
    adopted = result([0.0] * 4, [0.01] * 4, [0.02, 0.01, 0.03], 0.7)
    assert "lungs first is the default" in verdict(adopted)[1]
    assert default_finetune(adopted) == "lungs-in-model"  # the headline a card of `make train` may quote
    for refused in (
        result([0.0] * 4, [0.01] * 4, [0.02, -0.01, 0.03], 0.7),  # one dealing negative
        result([0.0] * 4, [0.01] * 4, [0.02, 0.01, 0.03], 0.8),  # the source reads better
    ):
        assert "stays an option" in verdict(refused)[1]
        assert default_finetune(refused) == "whole-film"


def test_padding_replaces_squashing_only_with_a_gain() -> None:
    gained = result([0.02] * 4, [0.0] * 4, [], 0.7)
    gained["probes"]["42"]["changes"][0]["ci95"] = [0.001, 0.05]
    assert "padding should replace squashing" in verdict(gained)[0]
    assert "stays" in verdict(result([0.02] * 4, [0.0] * 4, [], 0.7))[0]


def test_the_quality_page_says_when_its_rows_framed_the_film_otherwise() -> None:
    recorded = json.loads((STUDY_DIR / "results" / "quality.json").read_text())
    recorded["headline"]["recipe"].pop("framing", None)  # a report written before the framing was recorded
    assert "film's **centre crop**" in render(recorded) and "WHOLE_FILM.md" in render(recorded)
    recorded["headline"]["recipe"]["framing"] = WHOLE_FILM
    assert "WHOLE_FILM.md" not in render(recorded)


def test_the_trained_models_figures_are_read_from_their_folders_and_tabled(tmp_path) -> None:
    """`--trained NAME=FOLDER` records what each model folder measured, and the page tables them side by side."""
    from study.whole_film import TRAINED_FIGURES, trained_shortcuts, trained_verdict
    from study.whole_film_markdown import _trained_table

    models = {}
    lungs_first = {"model_type": "covid-cxr-lungs-first"}
    for name, share, focus in (("whole-film", 0.454, {}), ("lungs-first", 0.612, lungs_first)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "all_results.json").write_text(
            json.dumps(dict.fromkeys(TRAINED_FIGURES, 0.5) | {"test_lung_attention_mean": share})
        )
        shown = {"lungs_hidden_kept": {"value": share / 2}, "shown": {"lungs_hidden_kept": f"{share / 2:.0%} (CI)"}}
        (folder / "occlusion_results.json").write_text(json.dumps({"all": shown}))
        (folder / "config.json").write_text(json.dumps({"model_type": "dinov2"} | focus))
        models[name] = trained_shortcuts(folder)
    assert [m["lungs_first"] for m in models.values()] == [False, True]
    table = "\n".join(_trained_table(models))
    assert "| figure | whole-film | lungs-first |" in table
    assert "| share of the Grad-CAM heat inside the lungs (mean) | 0.454 | 0.612 |" in table
    assert "lungs hidden, all sources (lower: reads less outside them) | 23% (CI) | 31% (CI) |" in table
    (said,) = trained_verdict(models)  # more heat on the lungs, the rest equal or worse
    assert "heat inside the lungs 45.4% → 61.2%" in said and "on 1 of these 4 figures" in said


def test_the_one_model_is_read_against_the_rows_it_replaces_within_their_intervals() -> None:
    """The one lungs-first model's rows are unpaired with the rows they replace: the verdict reads each figure
    against the others' 95% CIs, says 'neither gains nor loses' only when every dealing lies inside, and never
    claims a paired change."""
    from study.whole_film import IN_MODEL_TUNE, in_model_verdict

    def row(auc: float) -> dict:
        return {"metrics": {"mixed_sources": {"roc_auc": auc, "roc_auc_low": auc - 0.07, "roc_auc_high": auc + 0.07}}}

    def tuned(in_model: list[float]) -> dict:
        return {
            str(seed): {"rows": {WHOLE_FILM_TUNE: row(0.68), LUNGS_FIRST_TUNE: row(0.70), IN_MODEL_TUNE: row(auc)}}
            for seed, auc in zip((42, 7, 1), in_model, strict=True)
        }

    (same,) = in_model_verdict(tuned([0.71, 0.70, 0.69]))
    assert "0.710, 0.700, 0.690 on dealing(s) 42, 7, 1" in same and "On 3 of 3 dealing(s)" in same
    assert "neither gains nor loses" in same and "unpaired" in same
    (moved,) = in_model_verdict(tuned([0.71, 0.80, 0.69]))  # outside the whole film's interval on one dealing
    assert "On 2 of 3 dealing(s)" in moved and "neither gains nor loses" not in moved
    assert in_model_verdict(result([0.0] * 4, [0.01] * 4, [0.02] * 3, 0.7)["finetunes"]) == []
