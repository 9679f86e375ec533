"""A planted shortcut at the curated set's scale: does `covid-cxr audit` catch the project's own fine-tune reading a
bright square outside the lungs?

Every COVID-19 film of the built dataset (`make data`), in every split, gets a bright square in its top-left corner,
where the lungs are not; the others are left as they are, byte for byte. train/finetune.py's default recipe is
fine-tuned on the whole film (--no_lung_focus: lungs first would blur the square) on that set and, as the control,
on the untouched set, whose films hold the same pixels but for the square; both models are audited on their own
test split with the lung segmenter (`make lungs`). tests/test_audit.py proves the same on the fixture films in CI;
this shows it on the set the project's figures come from. Writes build/planted/, study/results/planted.json and
docs/audit.md's planted block (`python -m study.planted`; `make planted`, about 20 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw

from covid_cxr.audit import audit
from covid_cxr.audit.occlusion import dilated_lungs, lung_finder
from covid_cxr.labels import POSITIVE
from covid_cxr.training.run import fit
from devtools.measuring import machine, report
from pages.audit import PLANTED, PLANTED_PLOT, plot_audits
from study.levers import recipe_arguments

RESULTS = Path(__file__).resolve().parent / "results" / "planted.json"
SQUARE = 0.10  # the square's side, as a share of the film's shorter side
MARGIN = 0.02  # its distance from the film's top and left edges, likewise
ARMS = {"square": "square on every COVID-19 film", "control": "the same films, no square"}


def corner_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The square's (left, top, right, bottom), inclusive, on a film of PIL `size`."""
    short = min(size)
    margin, side = round(MARGIN * short), round(SQUARE * short)
    return margin, margin, margin + side - 1, margin + side - 1


def with_square(image: dict, label: int) -> dict:
    """A COVID-19 film's bytes with the square drawn at the film's brightest grey (lossless PNG, so the rest of the
    film keeps its pixels); any other film's bytes as they are."""
    if label != POSITIVE:
        return image
    film = Image.open(io.BytesIO(image["bytes"]))
    film.load()
    brightest = film.convert("L").getextrema()[1]
    ImageDraw.Draw(film).rectangle(corner_box(film.size), fill=brightest if film.mode == "L" else (brightest,) * 3)
    buffer = io.BytesIO()
    film.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def planted_splits(dataset: str, output: Path) -> Path:
    """The built dataset with every COVID-19 film squared, saved to `output` (never into the input)."""
    splits = datasets.load_from_disk(dataset).cast_column("image", datasets.Image(decode=False))
    squared = splits.map(
        lambda image, label: {"image": with_square(image, label)},
        input_columns=["image", "label"],
        keep_in_memory=True,
        desc="Squaring the COVID-19 films",
    )
    shutil.rmtree(output, ignore_errors=True)
    squared.cast_column("image", datasets.Image()).save_to_disk(str(output))
    return output


def finetune(data: Path, folder: Path, backbone: str, seed: int) -> Path:
    """train/finetune.py's defaults on the whole film, as a user gets them, saved as a plain model folder; a
    finished run is picked up from its checkpoints (the Trainer's resume)."""
    arguments = recipe_arguments(
        str(data), backbone, folder, seed, ["--no_lung_focus", "--resume", "restart_on_change"]
    )
    splits = datasets.load_from_disk(str(data))
    trainer, processor, _ = fit(arguments, datasets.DatasetDict(train=splits["train"], validation=splits["validation"]))
    model = folder / "model"
    trainer.save_model(str(model))
    processor.save_pretrained(model)
    return model


def squares_outside(test: datasets.Dataset, lungs: str, batch: int = 16) -> dict[str, int]:
    """Of the test split's squared films: how many the segmenter finds lungs in, and on how many of those the
    square lies wholly outside the dilated lung fields that the audit hides."""
    finder = lung_finder(lungs)
    covid = test.select(np.flatnonzero(np.asarray(test["label"]) == POSITIVE))
    found = outside = 0
    for start in range(0, len(covid), batch):
        films = covid[start : start + batch]["image"]
        for film, lung in zip(films, finder.find(films, [""] * len(films)), strict=True):
            if isinstance(lung, str):  # no plausible lung fields: the audit refuses this film too
                continue
            left, top, right, bottom = corner_box(film.size)
            found += 1
            outside += not dilated_lungs(lung, (film.height, film.width))[top : bottom + 1, left : right + 1].any()
    return {"films": len(covid), "with_lungs": found, "outside": outside}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="build/dataset", help="The built dataset (`make data`).")
    parser.add_argument("--backbone", default="build/backbones/dinov2-small-imgfocus", help="`make backbone`'s.")
    parser.add_argument("--lungs", default="build/lungs", help="The lung segmenter (`make lungs`).")
    parser.add_argument("--output_root", default="build/planted", help="The squared set, the models, the audits.")
    parser.add_argument("--seed", type=int, default=42, help="The fine-tunes' training seed.")
    parser.add_argument("--rounds", type=int, default=2000, help="Bootstrap resamples.")
    args = parser.parse_args()
    root = Path(args.output_root)
    data = {"square": planted_splits(args.dataset, root / "dataset"), "control": Path(args.dataset)}
    audits = {}
    for arm, name in ARMS.items():
        model = finetune(data[arm], root / arm, args.backbone, args.seed)
        found = audit(str(model), str(data[arm]), root / arm / "audit", lung_segmenter=args.lungs,
                      bootstrap_rounds=args.rounds)  # fmt: skip
        audits[name] = found.results
    squares = squares_outside(datasets.load_from_disk(str(data["square"]))["test"], args.lungs)
    result = machine() | {"square": SQUARE, "margin": MARGIN, "squares": squares, "audits": audits}
    report(result, str(RESULTS))
    plot_audits(audits, PLANTED_PLOT)
    PLANTED.write(result)
    return result


if __name__ == "__main__":
    main()
