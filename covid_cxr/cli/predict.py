"""Score chest X-rays (PNG, JPEG, DICOM) with a trained model into a CSV or Parquet file, one row per film.

Each row holds the COVID-19 probability (calibrated when the model card says so), the decision at the model's
stored threshold and, where the lungs are known (a lungs-first model finds them itself), the share of the Grad-CAM
heat inside the lung fields; a file that cannot be read, or that is not a frontal chest X-ray, gets its reason
instead. No file stops the run; a summary line ends it. Films are scored in batches, decoded by a few threads
while the model runs. Under `accelerate launch` every process scores its share (on its GPU when there is one) and
the main process writes one file in the order of the input listing, the same as one process writes. Rows are kept
as they are scored: a killed run goes on with --resume. Research use only: not a diagnosis.

    covid-cxr predict --model my-model --inputs xrays/ --output predictions.csv
    covid-cxr predict --model my-org/covid-cxr --dataset my-org/archive --split test --output scores.parquet
    accelerate launch --multi_gpu --num_processes 4 -m covid_cxr.cli.predict --model m --inputs a/ --output s.parquet
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.model_folder import CONFORMAL
from covid_cxr.modeling.conformal import DEFAULT_COVERAGE

COLUMNS = (
    "file",
    "status",
    "covid_probability",
    "decision",
    "prediction_set",
    "threshold",
    "lung_attention",
    "lung_attention_ratio",
    "reason",
)
FIGURES = ("covid_probability", "threshold", "lung_attention", "lung_attention_ratio")  # Parquet float columns


@dataclass
class PredictArguments:
    """What to score, with which model, and where the rows go."""

    model: str = field(metadata={"help": "A model folder (covid-cxr finetune) or a Hub model id (org/name)."})
    output: str = field(
        metadata={
            "help": "The file to write: CSV, or Parquet when it ends in .parquet (a new file; --overwrite replaces "
            "an old one)."
        }
    )
    inputs: list[str] = field(
        default_factory=list,
        metadata={"help": "Files and folders to score; a folder gives its PNG, JPEG and DICOM files, sorted."},
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Score a `datasets` dataset instead of --inputs: a folder (save_to_disk) or a Hub id; its "
            "`image` column is scored and its id columns kept."
        },
    )
    split: str = field(default="test", metadata={"help": "The split of --dataset to score."})
    id_columns: list[str] = field(
        default_factory=list,
        metadata={"help": "The --dataset columns to keep in the output beside `row` (default: file_name, if any)."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream a Hub --dataset instead of downloading it first (each process reads every row)."},
    )
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
    overwrite: bool = field(default=False, metadata={"help": "Replace --output, and any interrupted run's rows."})
    resume: bool = field(
        default=False,
        metadata={
            "help": "Go on from the rows an interrupted run into --output kept (same model, inputs and settings, "
            "else it says what changed); with none, start afresh. A finished run's --output is never replaced "
            "without --overwrite."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Films per forward pass (per process)."})
    decode_workers: int = field(default=2, metadata={"help": "Threads decoding the next films per process."})
    bf16: bool = field(
        default=False,
        metadata={
            "help": "Run the model in bfloat16: faster where the device computes it natively (recent GPUs and "
            "CPUs), but the probabilities move (by a few hundredths on this project's CPU benchmark, "
            "docs/scoring.md) and the model card's figures were measured in float32."
        },
    )
    coverage: float = field(
        default=DEFAULT_COVERAGE,
        metadata={
            "help": "The share of films like the validation films whose true class the prediction_set column must "
            "hold (split-conformal, class by class): covid, non_covid, covid|non_covid (uncertain) or none. Empty "
            "for a model without validation probabilities, which claims no coverage."
        },
    )
    max_megabytes: int = field(default=200, metadata={"help": "Skip files larger than this (a bound on memory)."})


def check_output(output: Path, inputs: Sequence[str], overwrite: bool) -> str | None:
    """Why the rows may not be written there, or None: never over an input or inside an input folder (the check
    every command makes of its output), nor over an earlier output unless asked."""
    from covid_cxr.outputs import OutputFolderError, check_output_dir

    try:
        for name in inputs:
            check_output_dir(output, {"--inputs": name}, flag="--output")
    except OutputFolderError as err:
        return str(err)
    if output.exists() and not overwrite:
        return (
            f"--output {output} exists, the file of a finished run (--resume goes on only from an interrupted one): "
            "pass --overwrite to score again, or choose another file"
        )
    if not output.parent.is_dir():
        return f"--output {output}: the folder {output.parent} does not exist"
    return None


def listing(args: PredictArguments) -> tuple[Iterator, int | None, list[str], dict]:
    """The items to score, how many when known, the output's columns and their Parquet types."""
    import pyarrow as pa

    from covid_cxr.scoring.listing import ROW_COLUMN, ListingError, file_items, open_dataset

    results = dict.fromkeys(FIGURES, pa.float64())
    if args.dataset is None:
        if missing := [name for name in args.inputs if not Path(name).exists()]:
            raise ListingError(f"--inputs {' '.join(missing)}: no such file or folder")
        items = file_items(args.inputs, args.recursive)
        total = None if any(Path(name).is_dir() for name in args.inputs) else len(args.inputs)
        return items, total, list(COLUMNS), results
    data = open_dataset(args.dataset, args.split, args.id_columns, args.streaming)
    features = getattr(data.rows, "features", None) or {}
    ids = {name: features[name].pa_type if name in features else pa.string() for name in data.id_columns}
    columns = [ROW_COLUMN, *data.id_columns, *COLUMNS[1:]]
    return data.items(), data.num_rows, columns, {ROW_COLUMN: pa.int64()} | ids | results


def result_columns(predictor, answer) -> dict[str, object]:
    """A scored film's result columns: its figures, or why it is out of scope."""
    from covid_cxr.serving.predictor import OutOfScope

    if isinstance(answer, OutOfScope):
        return {"status": "out of scope", "reason": str(answer)}
    labels = predictor.model.config.id2label
    others = [name for index, name in labels.items() if index != predictor.positive]
    attention = answer.lung_attention
    return {
        "status": "ok",
        "covid_probability": round(answer.covid_probability, 4),
        "decision": labels[predictor.positive] if answer.covid_detected else " / ".join(others),
        "prediction_set": answer.prediction_set,
        "lung_attention": None if attention is None else round(attention, 3),
        "lung_attention_ratio": None if attention is None else round(answer.lung_attention_ratio, 2),
    }


def load_predictor(args: PredictArguments, device):
    """The Predictor for --model (and --lung_segmenter) on `device`; SystemExit with the reason when it cannot."""
    from covid_cxr.hub import fetch_model_folder
    from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
    from covid_cxr.serving.predictor import OutdatedModel, Predictor

    folder = fetch_model_folder(args.model)
    if folder is None:
        raise SystemExit(no_model(args.model))
    segmenter = None
    if args.lung_segmenter:
        if not holds_segmenter(args.lung_segmenter):
            raise SystemExit(f"no lung segmenter in {args.lung_segmenter} (covid-cxr train-lungs writes one)")
        segmenter = LungSegmenter.from_pretrained(args.lung_segmenter)
    try:
        return Predictor(folder, segmenter, device=device, bf16=args.bf16)
    except OutdatedModel as err:
        raise SystemExit(f"--model {args.model}: {err}") from err


def settings_of(args: PredictArguments, predictor) -> dict[str, object]:
    """What must match for a resumed run to go on from an interrupted one."""
    from covid_cxr.modeling.onnx_export import weights_digest

    chosen = ("model", "inputs", "dataset", "split", "id_columns", "recursive", "lung_segmenter", "batch_size")
    return {name: getattr(args, name) for name in (*chosen, "max_megabytes", "bf16", "coverage")} | {
        "weights_sha256": weights_digest(predictor.folder)
    }


def main(argv: Sequence[str] | None = None, prog: str = "covid-cxr predict") -> None:
    (args,) = parse_arguments((PredictArguments,), argv, prog=prog, description=__doc__)
    from covid_cxr.scoring.engine import launch_state

    state = launch_state()
    try:
        counts, fresh, seconds = predict(args, state)
    except SystemExit as stop:  # an input the command cannot use: one line, from the main process only
        if isinstance(stop.code, str):
            sys.exit(f"error: {stop.code}" if state.is_main_process else 1)
        raise
    if not state.is_main_process:
        return
    total = sum(counts.values())
    others = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status != "ok")
    print(
        f"Scored {counts['ok']} of {total} file(s) into {args.output}; {fresh} in this run, {seconds:.1f} s "
        f"({fresh / max(seconds, 1e-9):.1f} images/s, {state.num_processes} process(es))"
        + (f"; {others} (reasons in the file)" if others else "")
    )
    if not counts["ok"]:
        sys.exit(1)  # nothing could be scored: a script calling this should notice


def predict(args: PredictArguments, state):
    """Check, load, score this process's share and (main process) write the output: the count of each status,
    the films this run scored and the seconds it took. SystemExit with the reason for an input it cannot use."""
    from covid_cxr.scoring import engine
    from covid_cxr.scoring.listing import ListingError
    from covid_cxr.scoring.store import RunError, Shards, write_output

    output = Path(args.output)
    if bool(args.inputs) == bool(args.dataset):
        raise SystemExit("give --inputs (files and folders) or --dataset, one of them")
    if not 0 < args.coverage < 1:
        raise SystemExit(f"--coverage {args.coverage}: a share between 0 and 1 (0.9 for 90%)")
    inputs = args.inputs or ([args.dataset] if Path(args.dataset).exists() else [])
    if problem := check_output(output, inputs, args.overwrite):
        raise SystemExit(problem)
    try:
        items, total, columns, types = listing(args)
        first = next(items, None)
        if first is None:
            raise ListingError(f"no PNG, JPEG or DICOM file in {', '.join(inputs)}")
        predictor = load_predictor(args, state.device)
        predictor.coverage = args.coverage
        if predictor.conformal is None and state.is_main_process:
            print(f"note: --model {args.model} holds no {CONFORMAL} (validation probabilities): it claims no "
                  "coverage, and the prediction_set column is left empty", file=sys.stderr)  # fmt: skip
        shards, settings = Shards(output), settings_of(args, predictor)
        resume = shards.check(settings, args.resume, args.overwrite)
        state.wait_for_everyone()  # every process has checked the work folder before the main one makes it
        if state.is_main_process:
            shards.start(settings, resume)
        state.wait_for_everyone()
        heatmap = predictor.lung_threshold is not None  # for the heat inside the lungs

        def scorer(films: list) -> list[dict]:
            return [result_columns(predictor, answer) for answer in predictor.analyse_images(films, heatmap)]

        start = time.perf_counter()
        fresh = engine.run(chain([first], items), scorer, shards, state, args.batch_size, args.max_megabytes * 2**20,
                   args.decode_workers, total)  # fmt: skip
        seconds = time.perf_counter() - start
    except (ListingError, RunError) as err:
        raise SystemExit(str(err)) from err
    if not state.is_main_process:
        return None, fresh, seconds
    threshold = round(predictor.threshold, 4)
    rows = ({"threshold": threshold} | row for row in shards.merged())
    counts = write_output(rows, output, columns, pa_schema(columns, types))
    shutil.rmtree(shards.folder)
    return counts, fresh, seconds


def pa_schema(columns: list[str], types: dict):
    import pyarrow as pa

    return pa.schema([(name, types.get(name, pa.string())) for name in columns])


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
