"""The Gradio app served by `space/app.py`: upload a chest X-ray, read a calibrated score a clinician can parse."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import gradio as gr

from covid_cxr.analysis import Analyser, OutOfScope
from covid_cxr.imaging import ImageError

logger = logging.getLogger(__name__)
ACCEPTED = [".png", ".jpg", ".jpeg", ".dcm", ".dicom"]
DISCLAIMER = (
    "**Research demo, not a medical device.** Do not use it to diagnose, screen, triage or treat anyone. "
    "It was trained on a small public collection in which the label is tied to the hospital an image came from."
)


def _format(value: object, pattern: str = "{:.3f}") -> str:
    return pattern.format(value) if isinstance(value, (int, float)) else "n/a"


def model_facts_markdown(analyser: Analyser) -> str:
    facts = analyser.facts()
    return (
        f"**Model**: {facts['backbone']}, fine-tuned on `{facts['dataset']}`.  \n"
        f"**Test ROC AUC**: {_format(facts['test_roc_auc'])} on all sources, "
        f"**{_format(facts['test_mixed_roc_auc'])} on the sources holding both classes** (the honest figure).  \n"
        f"**Decision threshold**: {facts['threshold']:.3f} on the COVID-19 probability; on validation it gave "
        f"sensitivity {_format(facts['validation_sensitivity'])} and specificity "
        f"{_format(facts['validation_specificity'])}."
    )


def decision_markdown(covid_probability: float, detected: bool, analyser: Analyser) -> str:
    facts = analyser.facts()
    verdict = "**COVID-19 pattern suggested**" if detected else "**No COVID-19 pattern suggested**"
    return (
        f"{verdict}: probability {covid_probability:.3f} vs threshold {analyser.threshold:.3f} "
        f"(validation sensitivity {_format(facts['validation_sensitivity'])}, specificity "
        f"{_format(facts['validation_specificity'])}). A research output, not a diagnosis."
    )


def make_predict(analyser: Analyser):
    def predict(file_path: str | None):
        """Classify one chest X-ray file (PNG, JPEG or DICOM): label scores, decision, image seen, heat map."""
        if not file_path:
            raise gr.Error("Upload a chest X-ray first (PNG, JPEG or DICOM).")
        try:
            result = analyser.analyse(file_path)
        except ImageError as err:
            raise gr.Error(f"Could not read this file: {err}.") from None
        except OutOfScope as err:
            raise gr.Error(f"This does not look like a frontal chest radiograph: {err}. No score is given.") from None
        except Exception:
            logger.exception("prediction failed for %s", file_path)
            raise gr.Error(
                "Unexpected error while analysing this image; it has been logged. Try another file."
            ) from None
        decision = decision_markdown(result.covid_probability, result.covid_detected, analyser)
        return result.probabilities, decision, result.seen, result.heatmap

    return predict


def example_files(folder: Path) -> list[list[str]]:
    return [[str(path)] for path in sorted(folder.glob("*")) if path.suffix.lower() in ACCEPTED]


def build_demo(analyser: Analyser, examples: Path | None = None) -> gr.Blocks:
    with gr.Blocks(title="covid-cxr: COVID-19 chest X-ray research demo") as demo:
        gr.Markdown("# COVID-19 on chest X-rays: research demo")
        gr.Markdown(DISCLAIMER)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Frontal chest X-ray (PNG, JPEG or DICOM)", file_types=ACCEPTED, type="filepath")
                button = gr.Button("Analyse", variant="primary")
                gr.Markdown(model_facts_markdown(analyser))
            with gr.Column(scale=2):
                label = gr.Label(label="Calibrated probability", num_top_classes=2)
                decision = gr.Markdown(elem_id="decision")
                with gr.Row():
                    seen = gr.Image(label="Image as the model saw it", type="pil", interactive=False, height=320)
                    heat = gr.Image(
                        label="Where the model looked (Grad-CAM)", type="pil", interactive=False, height=320
                    )
        outputs = [label, decision, seen, heat]
        predict = make_predict(analyser)
        button.click(predict, inputs=upload, outputs=outputs, api_name="predict")
        listed = example_files(examples) if examples is not None else []
        if listed:
            gr.Examples(
                listed,
                inputs=upload,
                label="Test-split examples (file name: true label__source__original file)",
            )
    return demo


def write_examples(dataset_dir: Path, folder: Path, per_label: int = 2) -> Path:
    """Copy a few test-split images (mixed-label sources first) with their source in the file name."""
    import datasets

    if folder.exists():
        shutil.rmtree(folder)  # generated: never mix examples of an older build
    folder.mkdir(parents=True)
    test = datasets.load_from_disk(str(dataset_dir))["test"]
    names = test.features["label"].names
    rows = test.select_columns(["source", "label", "file_name"]).to_pandas()
    rows["mixed"] = rows["source"].map(rows.groupby("source")["label"].nunique() > 1)
    rows = rows.sort_values(["mixed", "file_name"], ascending=[False, True])
    raw = test.cast_column("image", datasets.Image(decode=False))
    for label_id, group in rows.groupby("label"):
        for index in group.index[:per_label]:
            target = folder / f"{names[label_id]}__{rows.at[index, 'source']}__{Path(rows.at[index, 'file_name']).name}"
            target.write_bytes(raw[int(index)]["image"]["bytes"])
    return folder


def missing_model_demo(model: str) -> gr.Blocks:
    """What the Space shows when no model exists yet: the exact command that makes one."""
    with gr.Blocks(title="covid-cxr: no model yet") as demo:
        gr.Markdown(
            f"# No trained model found at `{model}`\n\n"
            "Create one with `make train` (builds the dataset and fine-tunes the offline backbone on the CPU, "
            "about 5 minutes), or point the app at an existing model: `MODEL=path/or/hub-id make space`."
        )
    return demo
