"""The Gradio app served by `space/app.py`: upload a chest X-ray, read a calibrated score a clinician can parse."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from covid_cxr.data.imaging import ImageError
from covid_cxr.serving.examples import example_files
from covid_cxr.serving.predictor import OutOfScope, Predictor

logger = logging.getLogger(__name__)
ACCEPTED = [".png", ".jpg", ".jpeg", ".dcm", ".dicom"]
DISCLAIMER = (
    "**Research demo, not a medical device.** Do not use it to diagnose, screen, triage or treat anyone. "
    "It was trained on a small public collection in which the label is tied to the hospital an image came from."
)


def _format(value: object, pattern: str = "{:.3f}") -> str:
    return pattern.format(value) if isinstance(value, (int, float)) else "n/a"


def model_facts_markdown(predictor: Predictor) -> str:
    facts = predictor.facts()
    return (
        f"**Model**: {facts['backbone']}, fine-tuned on `{facts['dataset']}`.  \n"
        f"**Test ROC AUC**: {_format(facts['test_roc_auc'])} on all sources, "
        f"**{_format(facts['test_mixed_roc_auc'])} on the sources holding both classes** (the honest figure).  \n"
        f"**Decision threshold**: {facts['threshold']:.3f} on the COVID-19 probability; on validation it gave "
        f"sensitivity {_format(facts['validation_sensitivity'])} and specificity "
        f"{_format(facts['validation_specificity'])}."
    )


def decision_markdown(covid_probability: float, detected: bool, predictor: Predictor) -> str:
    """The decision at the stored threshold (not at 0.5: a probability of 0.4 may be above it)."""
    facts = predictor.facts()
    verdict = "**COVID-19 pattern suggested**" if detected else "**No COVID-19 pattern suggested**"
    return (
        f"## {verdict}\n\nCOVID-19 probability {covid_probability:.3f} vs decision threshold "
        f"{predictor.threshold:.3f} (validation sensitivity {_format(facts['validation_sensitivity'])}, specificity "
        f"{_format(facts['validation_specificity'])}). A research output, not a diagnosis."
    )


def make_predict(predictor: Predictor):
    def predict(file_path: str | None):
        """Classify one chest X-ray file (PNG, JPEG or DICOM): probabilities, decision, image seen, heat map."""
        if not file_path:
            raise gr.Error("Upload a chest X-ray first (PNG, JPEG or DICOM).")
        try:
            result = predictor.analyse(file_path)
        except ImageError as err:
            raise gr.Error(f"Could not read this file: {err}.") from None
        except OutOfScope as err:
            raise gr.Error(f"This does not look like a frontal chest radiograph: {err}. No score is given.") from None
        except Exception:
            logger.exception("prediction failed for %s", file_path)
            raise gr.Error(
                "Unexpected error while analysing this image; it has been logged. Try another file."
            ) from None
        decision = decision_markdown(result.covid_probability, result.covid_detected, predictor)
        return result.probabilities, decision, result.seen, result.heatmap

    return predict


def build_demo(predictor: Predictor, examples: Path | None = None) -> gr.Blocks:
    listed = example_files(examples) if examples is not None else []
    with gr.Blocks(title="covid-cxr: COVID-19 chest X-ray research demo") as demo:
        gr.Markdown("# COVID-19 on chest X-rays: research demo")
        gr.Markdown(DISCLAIMER)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Frontal chest X-ray (PNG, JPEG or DICOM)", file_types=ACCEPTED, type="filepath")
                button = gr.Button("Analyse", variant="primary")
                gallery = gr.Gallery(
                    [(str(path), ", ".join(path.name.split("__")[:2])) for path in listed],
                    label="Test-split examples (true label, source): click one to analyse it",
                    columns=4,
                    height=220,
                    allow_preview=False,
                    interactive=False,
                    visible=bool(listed),
                )
                gr.Markdown(model_facts_markdown(predictor))
            with gr.Column(scale=2):
                decision = gr.Markdown(label="Decision at the stored threshold", elem_id="decision")
                # bars only: a heading would name the likelier class, which can differ from the decision
                label = gr.Label(label="Calibrated probability", num_top_classes=2, show_heading=False)
                with gr.Row():
                    seen = gr.Image(label="Image as the model saw it", type="pil", interactive=False, height=320)
                    heat = gr.Image(
                        label="Where the model looked (Grad-CAM)", type="pil", interactive=False, height=320
                    )
        outputs = [label, decision, seen, heat]
        predict = make_predict(predictor)
        button.click(predict, inputs=upload, outputs=outputs, api_name="predict")

        def predict_example(event: gr.SelectData):
            return predict(str(listed[event.index]))

        gallery.select(predict_example, outputs=outputs, api_name=False)
    return demo


def missing_model_demo(model: str) -> gr.Blocks:
    """What the Space shows when no model exists yet: the exact command that makes one."""
    with gr.Blocks(title="covid-cxr: no model yet") as demo:
        gr.Markdown(
            f"# No trained model found at `{model}`\n\n"
            "Create one with `make train` (builds the dataset and fine-tunes the offline backbone on the CPU, "
            "about 5 minutes), or point the app at an existing model: `MODEL=path/or/hub-id make space`."
        )
    return demo
