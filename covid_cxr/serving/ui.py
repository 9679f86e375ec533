"""The Gradio app served by `space/app.py`: upload a chest X-ray, read an answer a clinician can parse.

The page and the API share one analysis but answer differently: the page keeps a refusal's reason in its
decision panel (a toast would vanish and leave error badges), the `/predict` API raises it as an error.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
from gradio.route_utils import FnIndexInferError
from PIL import Image
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from covid_cxr.data.imaging import ImageError
from covid_cxr.modeling.conformal import DEFAULT_COVERAGE
from covid_cxr.serving.examples import Example, read_examples
from covid_cxr.serving.predictor import OutOfScope, Prediction, Predictor
from covid_cxr.serving.wording import (
    RECORDED,
    disclaimer_markdown,
    heat_legend_html,
    model_markdown,
    probability_html,
    quality_markdown,
    refusal_markdown,
    verdict_markdown,
)

logger = logging.getLogger(__name__)
ACCEPTED = [".png", ".jpg", ".jpeg", ".dcm", ".dicom"]
FILE_LIFETIME_S = 120  # uploads and result images older than this are deleted (serving.cleanup, every half of it)
DEFAULT_PREVALENCE = 0.10
IMAGE_HEIGHT = 440
GALLERY_COLUMNS, GALLERY_ROW_PX = 2, 240  # two thumbnails a row leave room for a caption of label and source


class Refusal(Exception):
    """An answer the app gives instead of a score: the message is for the user, in plain words."""


@dataclass(frozen=True)
class Shown:
    """The answer on the page (without its images), kept per visitor so that a new coverage redraws it."""

    result: Prediction
    recorded: str | None
    seconds: float


def privacy_markdown(lifetime_s: int) -> str:
    """What happens to an upload, said where the upload is made."""
    minutes = max(1, round(lifetime_s * 1.5 / 60))
    return (
        f"**Your upload** is analysed on this server and deleted, with the result images, within about {minutes} "
        "minute(s); nothing is kept or used for training. Of a DICOM file only the pixels are read: patient "
        "tags are never shown or logged. Names burned into the pixels stay visible to you: prefer anonymised images."
    )


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


def publish(folder: Path, name: str, suffix: str, write: Callable[[Path], object]) -> str:
    """Each answer gets its own files, written under a temporary name and renamed into place: identical requests
    never share an output path, and no download ever sees a half-written file. Files in Gradio's cache folder
    are served as they are, and swept away with the uploads (serving.cleanup)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"covid-cxr-{name}-{uuid.uuid4().hex}{suffix}"
    staging = final.with_name(f".{final.name}.part")
    write(staging)
    os.replace(staging, final)
    return str(final)


def save_output(image: Image.Image | None, folder: Path, name: str) -> str | None:
    """One of the answer's images as a PNG file (fast: these files live for minutes)."""
    if image is None:
        return None
    return publish(folder, name, ".png", lambda path: image.save(path, format="PNG", compress_level=1))


def decision_label(result: Prediction, positive: str) -> dict[str, object]:
    """The API's probabilities as Gradio's Label reads them from a JSON file, headed by the decision at the stored
    threshold (`positive`: the model's COVID-19 label): from a plain dict Gradio heads them with the larger
    probability, which can contradict the decision (non_covid 0.65 above a COVID-19 pattern at a threshold of 0.34)."""
    others = {name: p for name, p in result.probabilities.items() if name != positive}
    headed = positive if result.covid_detected else max(others, key=others.get)
    ranked = sorted(result.probabilities.items(), key=lambda item: item[1], reverse=True)
    return {"label": headed, "confidences": [{"label": name, "confidence": p} for name, p in ranked]}


def analysis(predictor: Predictor, file: bytes | str | None) -> Prediction:
    """The predictor's answer, or a Refusal whose message says in plain words why there is none."""
    if file is None:
        raise Refusal("Upload a chest X-ray first (PNG, JPEG or DICOM).")
    try:
        return predictor.analyse(file)
    except ImageError as err:
        message = f"Could not read this file: {err}."
    except OutOfScope as err:
        message = f"This does not look like a frontal chest radiograph: {err}. No score is given."
    except Exception:
        logger.exception("prediction failed")  # no file name: it may name the patient
        raise Refusal("Unexpected error while analysing this image; it has been logged. Try another file.") from None
    log_refusal(message)
    raise Refusal(message)


def make_handlers(predictor: Predictor, output_dir: Path):
    """The page's handler (a refusal shown in the decision panel), its redraw at another coverage, and the API's
    handler (a refusal raised)."""

    def panels(shown: Shown, percent: float) -> tuple[str, str]:
        """The decision and the score bar of the shown answer, its prediction set at `percent` coverage."""
        coverage = percent / 100
        covid = shown.result.covid_probability
        result = replace(shown.result, prediction_set=predictor.prediction_set(covid, coverage))
        verdict = verdict_markdown(result, predictor.threshold, shown.recorded, shown.seconds, coverage)
        return verdict, probability_html(covid, predictor.threshold, predictor.band(coverage), coverage)

    def page(
        file: bytes | str | None, percent: float = 100 * DEFAULT_COVERAGE, recorded: str | None = None
    ) -> tuple[str, str, str | None, str | None, Shown | None]:
        start = time.perf_counter()
        try:
            result = analysis(predictor, file)
        except Refusal as err:
            return refusal_markdown(str(err), time.perf_counter() - start), "", None, None, None
        seen, heat = save_output(result.seen, output_dir, "seen"), save_output(result.heatmap, output_dir, "heatmap")
        shown = Shown(replace(result, seen=None, heatmap=None), recorded, time.perf_counter() - start)
        return *panels(shown, percent), seen, heat, shown

    def redraw(shown: Shown | None, percent: float) -> tuple[object, object]:
        """The shown answer at a newly chosen coverage: the film is not analysed again."""
        return (gr.skip(), gr.skip()) if shown is None else panels(shown, percent)

    def api(file: bytes | str | None):
        """Classify one chest X-ray file (PNG, JPEG or DICOM): probabilities, decision, image seen, heat map."""
        try:
            result = analysis(predictor, file)
        except Refusal as err:
            raise gr.Error(str(err), print_exception=False) from None
        seen, heat = save_output(result.seen, output_dir, "seen"), save_output(result.heatmap, output_dir, "heatmap")
        decision = decision_label(result, predictor.model.config.id2label[predictor.positive])
        label = publish(output_dir, "label", ".json", lambda path: path.write_text(json.dumps(decision)))
        return label, verdict_markdown(result, predictor.threshold, coverage=predictor.coverage), seen, heat

    return page, redraw, api


def build_demo(predictor: Predictor, examples: Path | None = None, file_lifetime_s: int = FILE_LIFETIME_S) -> gr.Blocks:
    listed = read_examples(examples) if examples is not None else []
    facts = predictor.facts()
    with gr.Blocks(title="covid-cxr: COVID-19 chest X-ray research demo") as demo:
        gr.Markdown("# COVID-19 on chest X-rays: research demo")
        gr.Markdown(disclaimer_markdown(facts))
        with gr.Row():
            with gr.Column(scale=2):
                upload, button, gallery = _inputs(listed, file_lifetime_s)
            with gr.Column(scale=3):
                outputs, coverage = _answer(sets=predictor.conformal is not None)
        gr.Markdown("## How good is this model?")
        prevalence = gr.Slider(
            1,
            60,
            value=100 * DEFAULT_PREVALENCE,
            step=1,
            label="How common is COVID-19 among the patients you would image (%)?",
        )
        quality = gr.Markdown(quality_markdown(facts, DEFAULT_PREVALENCE), elem_id="quality")
        gr.Markdown(model_markdown(facts))
        # the API's outputs: the probabilities headed by the decision at the threshold, the decision, the two images
        with gr.Group(visible=False):
            api_outputs = [
                gr.Label(label="Probabilities", show_heading=False),
                gr.Markdown(label="Decision at the stored threshold"),
                gr.Image(label="Image as the model saw it", type="filepath"),
                gr.Image(label="Where the model looked (Grad-CAM)", type="filepath"),
            ]
            api_button = gr.Button("predict")

        shown = gr.State()
        page, redraw, api = make_handlers(predictor, Path(demo.GRADIO_CACHE) / "covid-cxr-outputs")
        button.click(page, inputs=[upload, coverage], outputs=[*outputs, shown], api_name=False)
        api_button.click(api, inputs=upload, outputs=api_outputs, api_name="predict")
        gallery.select(_example_handler(page, listed), inputs=coverage, outputs=[*outputs, shown], api_name=False)
        coverage.change(redraw, [shown, coverage], outputs[:2], api_name=False, queue=False, show_progress="hidden")
        prevalence.change(
            lambda percent: quality_markdown(facts, percent / 100),
            prevalence,
            quality,
            api_name=False,
            queue=False,
            show_progress="hidden",
        )
    return demo


def _inputs(listed: list[Example], file_lifetime_s: int) -> tuple[gr.File, gr.Button, gr.Gallery]:
    """The upload, its button and the examples' gallery, above what the Space keeps of an upload and for how long."""
    # binary: the bytes are analysed in memory (type="filepath" leaves an empty temporary file behind on every
    # request in Gradio 6)
    upload = gr.File(label="Frontal chest X-ray (PNG, JPEG or DICOM)", file_types=ACCEPTED, type="binary")
    button = gr.Button("Analyse", variant="primary")
    gallery = gr.Gallery(
        [(str(e.path), f"{RECORDED.get(e.label, e.label)} · {e.source}") for e in listed],
        label="Examples from the test split (recorded label · source): click one to analyse it",
        columns=GALLERY_COLUMNS,
        height=GALLERY_ROW_PX * -(-len(listed) // GALLERY_COLUMNS) + 60,  # every row shown, none clipped
        object_fit="contain",
        allow_preview=False,
        interactive=False,
        visible=bool(listed),
        elem_id="examples",
    )
    gr.Markdown(privacy_markdown(file_lifetime_s))
    return upload, button, gallery


def _answer(sets: bool) -> tuple[list[gr.components.Component], gr.Slider]:
    """The decision, the score bar, the coverage of the prediction set (shown when the model claims one: `sets`),
    the X-ray as the model saw it and its heat map (with the heat's legend)."""
    prompt = "Upload a frontal chest X-ray and press **Analyse**, or click an example."
    decision = gr.Markdown(prompt, elem_id="decision")
    score = gr.HTML(elem_id="score-panel")
    coverage = gr.Slider(
        50,
        99,
        value=100 * DEFAULT_COVERAGE,
        step=1,
        label="Coverage (%): how often, on validation films, the possible answers held the true one",
        info="Higher coverage: fewer wrong answers given as sure, more answers 'uncertain'.",
        visible=sets,
        elem_id="coverage",
    )
    with gr.Row():
        seen = gr.Image(label="The X-ray as the model saw it", type="filepath", interactive=False, height=IMAGE_HEIGHT)
        heat = gr.Image(
            label="Where the model looked (Grad-CAM)", type="filepath", interactive=False, height=IMAGE_HEIGHT
        )
    gr.HTML(heat_legend_html())
    return [decision, score, seen, heat], coverage


def _example_handler(page: Callable, listed: list[Example]) -> Callable[[float, gr.SelectData], tuple]:
    """The gallery's click: the page's answer for the example at the event's index (any other index refused)."""

    def page_example(percent: float, event: gr.SelectData):
        # a private event, but a client can still send any index
        if not (type(event.index) is int and 0 <= event.index < len(listed)):
            raise refusal("No such example.")
        example = listed[event.index]
        return page(str(example.path), percent, example.label)

    return page_example


def missing_model_demo(model: str) -> gr.Blocks:
    """What the Space shows when no model exists yet: the exact command that makes one."""
    with gr.Blocks(title="covid-cxr: no model yet") as demo:
        gr.Markdown(
            f"# No trained model found at `{model}`\n\n"
            "Create one with `covid-cxr finetune --dataset DATASET --output_dir MODEL` (in a checkout: `make train`, "
            "which builds the dataset and fine-tunes the offline backbone on the CPU), or serve an existing model: "
            "`covid-cxr serve --model path/or/hub-id` (in a checkout: `MODEL=path/or/hub-id make space`)."
        )
    return demo
