"""The Gradio app served by `space/app.py`: upload a chest X-ray, read a calibrated score a clinician can parse."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import gradio as gr
from gradio.route_utils import FnIndexInferError
from PIL import Image
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from covid_cxr.data.imaging import ImageError
from covid_cxr.serving.examples import example_files
from covid_cxr.serving.predictor import OutOfScope, Prediction, Predictor

logger = logging.getLogger(__name__)
ACCEPTED = [".png", ".jpg", ".jpeg", ".dcm", ".dicom"]
DISCLAIMER = (
    "**Research demo, not a medical device.** Do not use it to diagnose, screen, triage or treat anyone. "
    "It was trained on a small public collection in which the label is tied to the hospital an image came from."
)
FILE_LIFETIME_S = 120  # uploads and result images older than this are deleted (serving.cleanup, every half of it)


def privacy_markdown(lifetime_s: int) -> str:
    """What happens to an upload, said where the upload is made."""
    minutes = max(1, round(lifetime_s * 1.5 / 60))
    return (
        f"**Your upload** is analysed on this server and deleted, with the result images, within about {minutes} "
        "minute(s); nothing is kept or used for training. Of a DICOM file only the pixels are read: patient "
        "tags are never shown or logged. Names burned into the pixels stay visible to you: prefer anonymised images."
    )


def _format(value: object, pattern: str = "{:.3f}") -> str:
    return pattern.format(value) if isinstance(value, (int, float)) else "n/a"


def _cross_validated(facts: dict[str, object]) -> str:
    """The mixed-label figure of k-fold cross-validation: steadier than one small test split."""
    if facts["cv_mixed_roc_auc"] is None:
        return ""
    return (
        f"**Mixed-label ROC AUC {_format(facts['cv_mixed_roc_auc'])} (95% CI {_format(facts['cv_mixed_roc_auc_low'])}"
        f"-{_format(facts['cv_mixed_roc_auc_high'])}), {facts['cv_folds']:.0f}-fold cross-validation** of this "
        "recipe.  \n"
    )


def model_facts_markdown(predictor: Predictor) -> str:
    facts = predictor.facts()
    return (
        f"**Model**: {facts['backbone']}, fine-tuned on `{facts['dataset']}`.  \n"
        f"**Test ROC AUC**: {_format(facts['test_roc_auc'])} on all sources, "
        f"**{_format(facts['test_mixed_roc_auc'])} on the sources holding both classes** (the honest figure).  \n"
        + _cross_validated(facts)
        + f"**Decision threshold**: {facts['threshold']:.3f} on the COVID-19 probability; on validation it gave "
        f"sensitivity {_format(facts['validation_sensitivity'])} and specificity "
        f"{_format(facts['validation_specificity'])}."
    )


def decision_markdown(result: Prediction, predictor: Predictor) -> str:
    """The decision at the stored threshold (not at 0.5: a probability of 0.4 may be above it), and where the
    model's attention lay: a score driven from outside the lungs says more about the hospital than the patient."""
    facts = predictor.facts()
    verdict = "**COVID-19 pattern suggested**" if result.covid_detected else "**No COVID-19 pattern suggested**"
    text = (
        f"## {verdict}\n\nCOVID-19 probability {result.covid_probability:.3f} vs decision threshold "
        f"{predictor.threshold:.3f} (validation sensitivity {_format(facts['validation_sensitivity'])}, specificity "
        f"{_format(facts['validation_specificity'])}). A research output, not a diagnosis."
    )
    if result.lung_attention is None:
        return text
    text += f"\n\n{result.lung_attention:.0%} of the model's attention is on the lungs (outlined in green)."
    if result.lung_attention < 0.5:
        text += (
            " **The model looked mostly outside the lungs: the score may reflect the hospital or the film, "
            "not the lungs.**"
        )
    return text


def log_refusal(message: str) -> None:
    """An expected refusal's one log line: no file name (it may name the patient) and no traceback."""
    logger.info("refused a request: %s", message)


def refusal(message: str) -> gr.Error:
    log_refusal(message)
    return gr.Error(message, print_exception=False)


def quiet_refusals() -> dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]:
    """Handlers for the server's expected refusals, each a one-line log instead of uvicorn's traceback
    "Exception in ASGI application": a call of an API name the app does not have (or keeps private), and a client
    that hung up mid-upload. No path is logged: a client chooses it, and it may hold a file name."""

    async def unknown_endpoint(request: Request, error: Exception) -> Response:
        log_refusal("no such API endpoint")
        return JSONResponse({"error": "No such API endpoint."}, status_code=404)

    async def hung_up(request: Request, error: Exception) -> Response:
        log_refusal("the client disconnected")
        return Response(status_code=400)  # never read: the client is gone

    return {FnIndexInferError: unknown_endpoint, ClientDisconnect: hung_up}


def save_output(image: Image.Image | None, folder: Path, name: str) -> str | None:
    """Each answer gets its own file, written under a temporary name and renamed into place: identical requests
    never share an output path, and no download ever sees a half-written file. Files in Gradio's cache folder
    are served as they are, and swept away with the uploads (serving.cleanup)."""
    if image is None:
        return None
    final = folder / f"covid-cxr-{name}-{uuid.uuid4().hex}.png"
    staging = final.with_name(f".{final.name}.part")
    image.save(staging, format="PNG")
    os.replace(staging, final)
    return str(final)


def make_predict(predictor: Predictor, output_dir: Path):
    def predict(file: bytes | str | None):
        """Classify one chest X-ray file (PNG, JPEG or DICOM): probabilities, decision, image seen, heat map."""
        if file is None:
            raise refusal("Upload a chest X-ray first (PNG, JPEG or DICOM).")
        try:
            result = predictor.analyse(file)
        except ImageError as err:
            raise refusal(f"Could not read this file: {err}.") from None
        except OutOfScope as err:
            raise refusal(f"This does not look like a frontal chest radiograph: {err}. No score is given.") from None
        except Exception:
            logger.exception("prediction failed")  # no file name: it may name the patient
            raise gr.Error(
                "Unexpected error while analysing this image; it has been logged. Try another file."
            ) from None
        decision = decision_markdown(result, predictor)
        output_dir.mkdir(parents=True, exist_ok=True)
        seen, heat = save_output(result.seen, output_dir, "seen"), save_output(result.heatmap, output_dir, "heatmap")
        return result.probabilities, decision, seen, heat

    return predict


def build_demo(predictor: Predictor, examples: Path | None = None, file_lifetime_s: int = FILE_LIFETIME_S) -> gr.Blocks:
    listed = example_files(examples) if examples is not None else []
    with gr.Blocks(title="covid-cxr: COVID-19 chest X-ray research demo") as demo:
        gr.Markdown("# COVID-19 on chest X-rays: research demo")
        gr.Markdown(DISCLAIMER)
        with gr.Row():
            with gr.Column(scale=1):
                # binary: the bytes are analysed in memory (type="filepath" leaves an empty temporary file behind
                # on every request in Gradio 6)
                upload = gr.File(label="Frontal chest X-ray (PNG, JPEG or DICOM)", file_types=ACCEPTED, type="binary")
                button = gr.Button("Analyse", variant="primary")
                gr.Markdown(privacy_markdown(file_lifetime_s))
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
                    seen = gr.Image(label="Image as the model saw it", type="filepath", interactive=False, height=320)
                    heat = gr.Image(
                        label="Where the model looked (Grad-CAM)", type="filepath", interactive=False, height=320
                    )
        outputs = [label, decision, seen, heat]
        predict = make_predict(predictor, Path(demo.GRADIO_CACHE) / "covid-cxr-outputs")
        button.click(predict, inputs=upload, outputs=outputs, api_name="predict")

        def predict_example(event: gr.SelectData):
            # a private event, but a client can still send any index
            if not (type(event.index) is int and 0 <= event.index < len(listed)):
                raise refusal("No such example.")
            return predict(str(listed[event.index]))

        gallery.select(predict_example, outputs=outputs, api_name=False)
    return demo


def missing_model_demo(model: str) -> gr.Blocks:
    """What the Space shows when no model exists yet: the exact command that makes one."""
    with gr.Blocks(title="covid-cxr: no model yet") as demo:
        gr.Markdown(
            f"# No trained model found at `{model}`\n\n"
            "Create one with `make train` (builds the dataset and fine-tunes the offline backbone on the CPU), "
            "or point the app at an existing model: `MODEL=path/or/hub-id make space`."
        )
    return demo
