"""Score chest X-rays (PNG, JPEG, DICOM) with a trained model into a CSV, one row per file.

Each row holds the calibrated COVID-19 probability, the decision at the model's stored threshold and, where the
lungs are known (a lungs-first model finds them itself), the share of the Grad-CAM heat inside the lung fields; a
file that cannot be read, or that is not a frontal chest X-ray, gets its reason instead. No file stops the run; a
summary line ends it. Research use only: not a diagnosis.

    covid-cxr predict --model my-model --inputs xrays/ --output predictions.csv
    covid-cxr predict --model my-org/covid-cxr --inputs a.dcm b.png --output scores.csv
"""

from __future__ import annotations

import csv
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from covid_cxr.cli.parsing import parse_arguments

COLUMNS = (
    "file",
    "status",
    "covid_probability",
    "decision",
    "threshold",
    "lung_attention",
    "lung_attention_ratio",
    "reason",
)


@dataclass
class PredictArguments:
    """What to score, with which model, and where the CSV goes."""

    model: str = field(metadata={"help": "A model folder (covid-cxr finetune) or a Hub model id (org/name)."})
    inputs: list[str] = field(
        metadata={"help": "Files and folders to score; a folder gives its PNG, JPEG and DICOM files."}
    )
    output: str = field(metadata={"help": "The CSV to write (a new file; --overwrite replaces an old one)."})
    lung_segmenter: str | None = field(
        default=None,
        metadata={
            "help": "A lung segmenter folder (covid-cxr train-lungs), for a model that is not lungs first: adds "
            "each image's share of the model's heat inside the lung fields, and refuses images with no plausible "
            "lung fields. A lungs-first model (as `covid-cxr finetune --lung_segmenter` writes) finds the lungs "
            "itself and needs none."
        },
    )
    recursive: bool = field(default=False, metadata={"help": "Also score the files of sub-folders."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})
    max_megabytes: int = field(default=200, metadata={"help": "Skip files larger than this (a bound on memory)."})


def files_to_score(inputs: Sequence[str], recursive: bool) -> list[Path]:
    """Every named file as given, and the supported images of every named folder, sorted and without repeats."""
    from covid_cxr.data.imaging import image_files

    found: dict[Path, None] = {}
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found.update(dict.fromkeys(image_files(path, recursive)))
        else:
            found[path] = None  # a missing or odd file gets its row with the reason
    return list(found)


def check_output(output: Path, inputs: Sequence[str], overwrite: bool) -> str | None:
    """Why the CSV may not be written there, or None: never over an input or inside an input folder (the check
    every command makes of its output), nor over an earlier CSV unless asked."""
    from covid_cxr.outputs import OutputFolderError, check_output_dir

    try:
        for name in inputs:
            check_output_dir(output, {"--inputs": name}, flag="--output")
    except OutputFolderError as err:
        return str(err)
    if output.exists() and not overwrite:
        return f"--output {output} exists: pass --overwrite to replace it, or choose another file"
    if not output.parent.is_dir():
        return f"--output {output}: the folder {output.parent} does not exist"
    return None


def score(predictor, files: Sequence[Path], heatmap: bool, max_bytes: int) -> Iterator[dict[str, object]]:
    """One CSV row per file; a file the model cannot score gets its reason, a fault in the code its traceback's
    last line, and the run goes on."""
    from tqdm.auto import tqdm

    from covid_cxr.data.imaging import ImageError, fault_reason
    from covid_cxr.serving.predictor import OutOfScope

    labels = predictor.model.config.id2label
    for path in tqdm(files, desc="Scoring", unit="img"):
        row: dict[str, object] = {"file": str(path), "threshold": round(predictor.threshold, 4)}
        try:
            prediction = predictor.analyse(path, heatmap=heatmap, max_bytes=max_bytes)
        except ImageError as err:
            yield row | {"status": "unreadable", "reason": str(err)}
            continue
        except OutOfScope as err:
            yield row | {"status": "out of scope", "reason": str(err)}
            continue
        except Exception as err:  # a fault in this code or a library, not in the file: reported, never fatal
            yield row | {"status": "error", "reason": fault_reason(path, err)}
            continue
        others = [name for index, name in labels.items() if index != predictor.positive]
        decision = labels[predictor.positive] if prediction.covid_detected else " / ".join(others)
        attention = prediction.lung_attention
        yield row | {
            "status": "ok",
            "covid_probability": round(prediction.covid_probability, 4),
            "decision": decision,
            "lung_attention": None if attention is None else round(attention, 3),
            "lung_attention_ratio": None if attention is None else round(prediction.lung_attention_ratio, 2),
        }


def write_rows(rows: Iterator[dict[str, object]], output: Path) -> Counter:
    """Stream the rows into a hidden file beside `output` (with the umask's mode), renamed into place at the end:
    a killed run leaves no half CSV under the name; returns the count of each status."""
    counts: Counter = Counter()
    partial = output.with_name(f".{output.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        with partial.open("x", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                counts[str(row["status"])] += 1
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return counts


def main(argv: Sequence[str] | None = None, prog: str = "covid-cxr predict") -> None:
    (args,) = parse_arguments((PredictArguments,), argv, prog=prog, description=__doc__)
    output = Path(args.output)
    if problem := check_output(output, args.inputs, args.overwrite):
        sys.exit(f"error: {problem}")
    if missing := [name for name in args.inputs if not Path(name).exists()]:
        sys.exit(f"error: --inputs {' '.join(missing)}: no such file or folder")
    files = files_to_score(args.inputs, args.recursive)
    if not files:
        sys.exit(f"error: no PNG, JPEG or DICOM file in {', '.join(args.inputs)}")

    from covid_cxr.hub import fetch_model_folder
    from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
    from covid_cxr.serving.predictor import OutdatedModel, Predictor

    folder = fetch_model_folder(args.model)
    if folder is None:
        sys.exit(f"error: {no_model(args.model)}")
    segmenter = None
    if args.lung_segmenter:
        if not holds_segmenter(args.lung_segmenter):
            sys.exit(f"error: no lung segmenter in {args.lung_segmenter} (covid-cxr train-lungs writes one)")
        segmenter = LungSegmenter.from_pretrained(args.lung_segmenter)
    try:
        predictor = Predictor(folder, segmenter)
    except OutdatedModel as err:
        sys.exit(f"error: --model {args.model}: {err}")
    heatmap = predictor.lung_threshold is not None  # for the heat inside the lungs
    rows = score(predictor, files, heatmap=heatmap, max_bytes=args.max_megabytes * 2**20)
    counts = write_rows(rows, output)
    others = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status != "ok")
    print(
        f"Scored {counts['ok']} of {len(files)} file(s) into {output}"
        + (f"; {others} (reasons in the CSV)" if others else "")
    )
    if not counts["ok"]:
        sys.exit(1)  # nothing could be scored: a script calling this should notice


def no_model(model: str) -> str:
    """Why `model` gave no model folder, in the user's terms."""
    from huggingface_hub import constants

    from covid_cxr.hub import is_hub_id

    if Path(model).exists():
        return f"{model} holds no model (no config.json): give a covid-cxr finetune output folder"
    if is_hub_id(model) and constants.HF_HUB_OFFLINE:
        return f"{model} is not in the local Hub cache, and HF_HUB_OFFLINE is set: download it online once"
    if is_hub_id(model):
        return f"{model} could not be downloaded from the Hub (no such model, no access, or no network)"
    return f"no model folder {model}: give a covid-cxr finetune output folder or a Hub model id (org/name)"


if __name__ == "__main__":
    main()
