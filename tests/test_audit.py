"""`covid-cxr audit` on real X-rays: a planted shortcut is caught by the occlusion test, a lung-reading model is
told apart from it, and bad inputs end in a message, never a traceback.

The planted set: every fixture film twice, once labelled COVID-19 with a small bright marker, once non-COVID without
it, so the marker is the only thing that tells the classes apart. One tiny model learns it in a corner outside the
lungs (a hospital's label), another inside the lung field (a finding); both are plain transformers classifiers saved
with save_pretrained, audited as any Hub model would be. The lung fields are given as a folder of masks.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

from covid_cxr.audit import audit
from covid_cxr.audit.card import occlusion_figures
from covid_cxr.audit.measures import READS_LUNGS, READS_OUTSIDE
from covid_cxr.audit.occlusion import (
    LUNGS_HIDDEN,
    LUNGS_ONLY,
    WHOLE,
    blur_image_outside,
    dilated_lungs,
    hide_lungs,
    views,
)
from covid_cxr.cli.audit import main
from covid_cxr.data.build import BuildConfig, build_dataset
from covid_cxr.evaluation.keys import ALL, MIXED
from covid_cxr.labels import POSITIVE
from covid_cxr.training.run import run
from study.planted import corner_box, planted_splits, squares_outside
from tests.conftest import FIXTURE_ROOT, LAUNCH, LAUNCH_ENV, read_metadata, tiny_run_arguments

SIDE = 128
MARKER = 12  # px of SIDE: a small bright square
CORNER = (slice(4, 4 + MARKER), slice(4, 4 + MARKER))  # outside the dilated lungs
IN_LUNG = (slice(58, 58 + MARKER), slice(86, 86 + MARKER))  # inside the right lung field
ROUNDS = 200
STEPS = 40  # the planted fine-tune's: enough for the square to be learnt
BIG_CORNER = (slice(2, 22), slice(2, 22))  # the fine-tune's square, still outside the dilated lungs


def lung_mask() -> np.ndarray:
    """Two lung-shaped fields, where the lungs of the fixture films lie."""
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    mask[32:100, 16:56] = mask[32:100, 72:112] = True
    return mask


def planted_set(root: Path, marker: tuple[slice, slice], jitter: int = 0) -> Path:
    """A curated-layout folder: every fixture film as non-COVID, and again as COVID-19 with the marker; lung masks
    in root/masks; one corrupt file and one film without a mask, both to be refused. `jitter`: each saved film
    gets its own noise of up to that many grey levels (so that two copies of a film are not byte-identical)."""
    rng = np.random.default_rng(0)
    images, masks = root / "data" / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rows = []
    for k, row in enumerate(read_metadata(FIXTURE_ROOT)):
        film = np.asarray(Image.open(FIXTURE_ROOT / row["file_name"]).convert("L").resize((SIDE, SIDE)))
        marked = film.copy()
        marked[marker] = 255
        for label, pixels in (("non_covid", film), ("covid", marked)):
            name = f"images/{k:02d}_{label}.png"
            noise = rng.integers(0, jitter + 1, pixels.shape) if jitter else 0
            Image.fromarray(np.uint8(np.clip(pixels.astype(int) + noise, 0, 255))).save(root / "data" / name)
            Image.fromarray(np.uint8(lung_mask()) * 255).save(masks / f"{Path(name).stem}.png")
            rows.append({"file_name": name, "label": label, "source": row["source"], "patient_id": f"pair-{k}",
                         "view": "AP Supine" if k % 2 else "PA"})  # fmt: skip
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.open(FIXTURE_ROOT / read_metadata(FIXTURE_ROOT)[0]["file_name"]).save(images / "unmasked.png")
    rows += [
        {"file_name": "images/broken.png", "label": "covid", "source": "covid_cxnet", "patient_id": "", "view": "PA"},
        {"file_name": "images/unmasked.png", "label": "covid", "source": "covid_cxnet", "patient_id": "", "view": "PA"},
    ]
    with (root / "data" / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "data"


def train_tiny(data: Path, folder: Path, steps: int = 40) -> Path:
    """A tiny randomly initialised ResNet fitted on the set's films for a few full-batch steps, saved as a Hub
    model folder with its image processor (no decision_threshold: the audit must fall back to 0.5)."""
    torch.manual_seed(0)
    processor = ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", num_labels=2,
                          id2label={0: "non_covid", 1: "covid"}, label2id={"non_covid": 0, "covid": 1})  # fmt: skip
    model = ResNetForImageClassification(config)
    rows = [r for r in read_metadata(data) if "_" in Path(r["file_name"]).stem]  # the planted pairs
    films = [Image.open(data / r["file_name"]).convert("RGB") for r in rows]
    pixels = processor(films, return_tensors="pt")["pixel_values"]
    labels = torch.tensor([int(r["label"] == "covid") for r in rows])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimiser.step()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, dict]]:
    """For each marker place: (model folder, data folder, audit.json), audited on the raw folder."""
    audits = {}
    for place, marker in (("corner", CORNER), ("lung", IN_LUNG)):
        root = tmp_path_factory.mktemp(place)
        data = planted_set(root, marker)
        model = train_tiny(data, root / "model")
        audit(str(model), str(data), root / "audit", lung_segmenter=root / "masks", bootstrap_rounds=ROUNDS)
        audits[place] = (model, data, json.loads((root / "audit" / "audit.json").read_text()))
    return audits


def test_hide_lungs_fills_the_dilated_lungs_and_leaves_the_rest() -> None:
    film = np.asarray(Image.open(FIXTURE_ROOT / read_metadata(FIXTURE_ROOT)[0]["file_name"]).convert("L"))
    hidden = hide_lungs(film, lung_mask())
    inside = dilated_lungs(lung_mask(), film.shape)
    assert inside.mean() > lung_mask().mean()  # dilated, as lungs first keeps the margin sharp
    np.testing.assert_array_equal(hidden[~inside], film[~inside])
    assert len(np.unique(hidden[inside])) == 1 and np.abs(hidden[inside].astype(int) - film[inside]).mean() > 5
    seen = views(Image.fromarray(film), lung_mask())
    np.testing.assert_array_equal(seen[LUNGS_ONLY], blur_image_outside(Image.fromarray(film), lung_mask()))
    np.testing.assert_array_equal(seen[WHOLE], film)


def test_a_planted_shortcut_outside_the_lungs_is_flagged(planted) -> None:
    """The corner marker survives hiding the lungs: the model keeps its discrimination. The same marker in the lung
    field does not: that model loses it. A broken occlusion (nothing hidden, or everything) fails one of the two."""
    for subset in (ALL, MIXED):
        shortcut = planted["corner"][2]["occlusion"][subset]
        reader = planted["lung"][2]["occlusion"][subset]
        assert shortcut[WHOLE]["roc_auc"]["value"] > 0.9 and reader[WHOLE]["roc_auc"]["value"] > 0.9
        assert shortcut[LUNGS_HIDDEN]["roc_auc"]["value"] > shortcut[WHOLE]["roc_auc"]["value"] - 0.1
        assert reader[LUNGS_HIDDEN]["roc_auc"]["value"] < 0.6
        assert reader[LUNGS_ONLY]["roc_auc"]["value"] > reader[WHOLE]["roc_auc"]["value"] - 0.1
        loss = {p: -planted[p][2]["occlusion"][subset][LUNGS_HIDDEN]["change"]["value"] for p in planted}
        assert loss["lung"] > loss["corner"] + 0.3
        assert shortcut["verdict"] == READS_OUTSIDE and reader["verdict"] == READS_LUNGS
    card = occlusion_figures(planted["corner"][0].parent / "audit" / "audit.json")
    assert card[ALL]["verdict"] == READS_OUTSIDE and "outside the lungs" in card[ALL]["sentence"]


def test_a_fine_tune_that_learns_a_planted_corner_square_is_caught(backbone: Path, tmp_path: Path) -> None:
    """The project's own fine-tune, on the whole film, of real fixture X-rays in which every COVID-19 film carries a
    bright square in a corner outside the lungs: the audit says it reads something outside the lungs. The same
    fine-tune on the same films without the square does not get that verdict (it has nothing to tell them by)."""
    found = {}
    for name, marker in (("square", BIG_CORNER), ("no square", (slice(0, 0), slice(0, 0)))):
        root = tmp_path / name.replace(" ", "-")
        data = planted_set(root, marker, jitter=2)  # without the square the two copies differ by noise alone
        build_dataset(BuildConfig(input_dir=data, output_dir=root / "dataset"))
        steps = {"max_steps": STEPS, "eval_steps": STEPS, "save_steps": STEPS, "learning_rate": 2e-3}
        model_args, *rest = tiny_run_arguments(backbone, root / "dataset", root / "model", lung_focus=False, **steps)
        run(replace(model_args, image_size=112), *rest)
        report = audit(str(root / "model"), str(data), root / "audit", lung_segmenter=root / "masks",
                       bootstrap_rounds=ROUNDS)  # fmt: skip
        found[name] = report.results["occlusion"][ALL]
    assert found["square"]["verdict"] == READS_OUTSIDE, found["square"]
    assert found["no square"]["verdict"] != READS_OUTSIDE, found["no square"]


def test_the_planted_study_squares_every_covid_film_and_nothing_else(
    small_dataset: Path, lungs_folder: Path, tmp_path: Path
) -> None:
    """study/planted.py's set, on real curated films: every COVID-19 film carries the square at its brightest grey
    and keeps every other pixel (lossless), every other film keeps its bytes, every record its fields; and the
    count of squares outside the dilated lungs covers the test split's COVID-19 films."""
    before = datasets.load_from_disk(str(small_dataset))
    after = datasets.load_from_disk(str(planted_splits(str(small_dataset), tmp_path / "planted")))
    raw = {name: split.cast_column("image", datasets.Image(decode=False)) for name, split in after.items()}
    for name, split in before.items():
        assert split.remove_columns("image").to_list() == after[name].remove_columns("image").to_list()
        originals = split.cast_column("image", datasets.Image(decode=False))
        for old, new, old_file, new_file in zip(split, after[name], originals, raw[name], strict=True):
            if old["label"] != POSITIVE:
                assert new_file["image"]["bytes"] == old_file["image"]["bytes"]
                continue
            film, squared = np.asarray(old["image"].convert("L")), np.asarray(new["image"].convert("L"))
            left, top, right, bottom = corner_box(old["image"].size)
            square = np.zeros(film.shape, dtype=bool)
            square[top : bottom + 1, left : right + 1] = True
            assert (squared[square] == film.max()).all() and (squared[~square] == film[~square]).all()
    counts = squares_outside(after["test"], str(lungs_folder))
    assert counts["films"] == int((np.asarray(after["test"]["label"]) == POSITIVE).sum()) > 0
    assert 0 <= counts["outside"] <= counts["with_lungs"] <= counts["films"]


def test_the_report_lists_refusals_and_facts_and_never_a_patient_id(planted) -> None:
    model, data, results = planted["corner"]
    refused = {r["file_name"]: r["reason"] for r in results["refused"]}
    assert set(refused) == {"images/broken.png", "images/unmasked.png"}
    assert "truncated or corrupt" in refused["images/broken.png"]
    assert "no lung mask unmasked.png" in refused["images/unmasked.png"]
    assert results["data"]["n_scored"] == 2 * len(read_metadata(FIXTURE_ROOT))
    facts = results["model"]
    assert facts["threshold"] == 0.5 and "no decision_threshold" in facts["threshold_from"]
    assert facts["input_size"] == [64, 64] and facts["crops_the_film"].startswith("no")
    page = (model.parent / "audit" / "AUDIT.md").read_text()
    assert "looks like it reads something outside the lungs" in page and "images/broken.png" in page
    written = page + (model.parent / "audit" / "audit.json").read_text()
    assert not [r["patient_id"] for r in read_metadata(data) if r["patient_id"] and r["patient_id"] in written]
    assert {p.name for p in (model.parent / "audit").iterdir()} >= {"audit_occlusion.png", "audit_views.png"}


def test_the_projection_is_measured_inside_the_mixed_label_sources(planted) -> None:
    """Each pair (one film, unmarked and marked) shares its projection, half the pairs AP and half PA: the
    projection alone gives nothing, and the corner marker, in both projections, keeps the model's discrimination
    within them."""
    model, _, results = planted["corner"]
    projection = results["strata"]["projection"]
    assert results["strata"]["subset"] == MIXED and set(projection["strata"]) == {"AP", "PA"}
    assert projection["n"] == results["discrimination"][MIXED]["n"] and projection["n_unknown"] == 0
    assert projection["alone"]["value"] == pytest.approx(0.5)
    assert projection["within"]["low"] > 0.5 and results["strata"]["sex"] is None  # no sex recorded
    page = (model.parent / "audit" / "AUDIT.md").read_text()
    assert "## 4. Inside: the projection, the sex, the age" in page and "Comparing only films of the same" in page
    assert "reads the projection of" in page  # the projection probe


def test_a_built_dataset_gives_the_same_figures_as_its_folder(planted, tmp_path: Path) -> None:
    model, data, from_folder = planted["lung"]
    build_dataset(BuildConfig(input_dir=data, output_dir=tmp_path / "built"))
    report = audit(str(model), str(tmp_path / "built"), tmp_path / "audit", lung_segmenter=data.parent / "masks",
                   split="all", bootstrap_rounds=ROUNDS)  # fmt: skip
    assert report.results["discrimination"] == from_folder["discrimination"]
    assert report.results["occlusion"] == from_folder["occlusion"]


def test_two_processes_under_accelerate_launch_write_the_report_one_writes(planted, tmp_path: Path) -> None:
    """The corner set's audit, its batches shared by two processes (gloo, CPU): the same audit.json, refusals
    included, as one process writes with the same batches."""
    model, data, _ = planted["corner"]
    arguments = ["--model", str(model), "--data", str(data), "--lung_segmenter", str(data.parent / "masks"),
                 "--bootstrap_rounds", str(ROUNDS), "--batch_size", "8"]  # fmt: skip
    main([*arguments, "--output_dir", str(tmp_path / "one")])
    command = [*LAUNCH, "-m", "covid_cxr.cli.audit", *arguments, "--output_dir", str(tmp_path / "two")]
    done = subprocess.run(command, capture_output=True, text=True, env=LAUNCH_ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Wrote ") == 1  # the main process reports
    one, two = (json.loads((tmp_path / name / "audit.json").read_text()) for name in ("one", "two"))
    assert two["data"]["n_scored"] > 16 and len(two["refused"]) == 2  # batches of both processes, both refusals
    assert two | {"date": None} == one | {"date": None}


def test_bad_inputs_end_in_one_line_not_a_traceback(planted, tmp_path: Path, capsys) -> None:
    model, data, _ = planted["corner"]
    pets = shutil.copytree(model, tmp_path / "pets")
    config = json.loads((pets / "config.json").read_text())
    config |= {"id2label": {"0": "cat", "1": "dog"}, "label2id": {"cat": 0, "dog": 1}}
    (pets / "config.json").write_text(json.dumps(config))
    (tmp_path / "empty").mkdir()
    output = str(tmp_path / "out")
    cases = {
        "hold no label for the positive class 'covid'": [str(pets), str(data), output],
        "lies inside the input folder --data": [str(model), str(data), str(data / "audit")],
        "cannot load it as an image classifier": [str(tmp_path / "empty"), str(data), output],
        "neither a dataset this project built": [str(model), str(tmp_path / "nothing"), output],
    }
    for message, (model_arg, data_arg, output_arg) in cases.items():
        with pytest.raises(SystemExit) as exit_status:
            main(["--model", model_arg, "--data", data_arg, "--output_dir", output_arg])
        error = capsys.readouterr().err
        assert exit_status.value.code == 2 and message in error and "Traceback" not in error, error
    assert not (tmp_path / "out").exists()


def test_every_argument_has_help_and_a_shown_default(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 2000)" in text and "--model MODEL" in text and "(required)" in text
