"""covid-cxr Gradio Space: upload a frontal chest X-ray (PNG, JPEG or DICOM), get a calibrated COVID-19
probability, the decision at the model's stored threshold and a Grad-CAM heat map. Research use only.

    MODEL=build/model PORT=7860 python space/app.py        # or: make space
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from covid_cxr.analysis import MAX_UPLOAD_BYTES, Analyser
from covid_cxr.demo import build_demo, missing_model_demo, write_examples

HERE = Path(__file__).resolve().parent


def model_location() -> str:
    """$MODEL, else the model shipped with a deployed Space (a folder or a MODEL_ID file), else build/model."""
    if os.environ.get("MODEL"):
        return os.environ["MODEL"]
    if (HERE / "model" / "config.json").is_file():
        return str(HERE / "model")
    if (HERE / "MODEL_ID").is_file():
        return (HERE / "MODEL_ID").read_text().strip()
    return "build/model"


def examples_folder() -> Path | None:
    """Examples shipped beside the app, else a few test-split images of the local dataset build."""
    if (HERE / "examples").is_dir():
        return HERE / "examples"
    dataset = Path(os.environ.get("DATASET", "build/dataset"))
    return (
        write_examples(dataset, dataset.parent / f"{dataset.name}-examples")
        if (dataset / "dataset_dict.json").is_file()
        else None
    )


def resolve_model(model: str) -> str | None:
    """A local model folder, or a Hub id downloaded to the cache; None when neither holds a model."""
    if (Path(model) / "config.json").is_file():
        return model
    if Path(model).exists():
        return None
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model)
    except Exception as err:  # offline, unknown repo, bad id: all mean "no model here"
        logging.getLogger(__name__).warning("no model at %s (%s)", model, err)
        return None


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    model = model_location()
    folder = resolve_model(model)
    examples = examples_folder() if folder else None
    if folder is None:
        print(f"No trained model at {model}: run `make train`, or set MODEL to a model folder or Hub id.")
    demo = build_demo(Analyser(folder), examples) if folder else missing_model_demo(model)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("PORT", "7860")),
        max_file_size=MAX_UPLOAD_BYTES,
        allowed_paths=[str(examples)] if examples else None,
    )


if __name__ == "__main__":
    main()
