"""Start the Space: find the model (env, shipped beside the app, or a Hub id), its examples, and serve."""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from covid_cxr.hub import fetch_model_folder
from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
from covid_cxr.model_folder import CONFIG
from covid_cxr.serving.cleanup import claim_cache, start_sweeper
from covid_cxr.serving.examples import write_examples
from covid_cxr.serving.predictor import MAX_UPLOAD_BYTES, OutdatedModel, Predictor
from covid_cxr.serving.ui import FILE_LIFETIME_S, build_demo, missing_model_demo, quiet_refusals

logger = logging.getLogger(__name__)
MODEL_ID_FILE = "MODEL_ID"
ARENA_MAX = 2  # glibc malloc arenas for the server; MALLOC_ARENA_MAX overrides it (0: glibc's own, 8 per core)
M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def bound_malloc_arenas() -> None:
    """Cap glibc's malloc arenas before Gradio starts its worker threads: each thread otherwise gets an arena of
    its own, which keeps the freed image buffers of the requests it served, so RSS grows with the thread count
    (bench/soak.py measures it). A no-op off glibc."""
    count = int(os.environ.get("MALLOC_ARENA_MAX", ARENA_MAX))
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    if count > 0:
        libc.mallopt(M_ARENA_MAX, count)


def model_location(app_dir: Path, build_dir: Path | None) -> str | None:
    """$MODEL, else the model shipped with a deployed Space (a folder or a MODEL_ID file), else ``build_dir/model``
    (a checkout's `make train`); None when there is nothing to try."""
    if os.environ.get("MODEL"):
        return os.environ["MODEL"]
    if (app_dir / "model" / CONFIG).is_file():
        return str(app_dir / "model")
    if (app_dir / MODEL_ID_FILE).is_file():
        return (app_dir / MODEL_ID_FILE).read_text().strip()
    return None if build_dir is None else str(build_dir / "model")


def lung_segmenter(app_dir: Path, build_dir: Path | None) -> LungSegmenter | None:
    """$LUNGS (FileNotFoundError when it holds none), else the segmenter shipped beside the app, else
    ``build_dir/lungs``; None when there is none. A lungs-first model finds the lungs itself; another model then
    works without lung outlines and attention shares."""
    named = os.environ.get("LUNGS")
    if named and not holds_segmenter(named):
        raise FileNotFoundError(f"--lung_segmenter {named}: no lung segmenter there (covid-cxr train-lungs writes one)")
    for folder in (named, app_dir / "lungs", build_dir and build_dir / "lungs"):
        if folder and holds_segmenter(folder):
            return LungSegmenter.from_pretrained(folder)
    logger.info("no lung segmenter: a model that is not lungs first is served without lung outlines and attention")
    return None


def examples_folder(app_dir: Path, build_dir: Path | None) -> Path | None:
    """Examples shipped beside the app, else a few test-split images of $DATASET or ``build_dir/dataset``."""
    if (app_dir / "examples").is_dir():
        return app_dir / "examples"
    if os.environ.get("DATASET"):
        dataset = Path(os.environ["DATASET"])
    elif build_dir is not None:
        dataset = build_dir / "dataset"
    else:
        return None
    if not (dataset / "dataset_dict.json").is_file():
        return None
    return write_examples(dataset, dataset.parent / f"{dataset.name}-examples")


def private_cache() -> Path:
    """A cache folder of this process's own under $GRADIO_TEMP_DIR (Gradio's default: the system temp folder),
    so that sweeping it never touches another app's files; removed when the app exits, and by a later instance's
    sweep when the app is killed (serving.cleanup)."""
    cache = claim_cache(Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir())))
    os.environ["GRADIO_TEMP_DIR"] = str(cache)  # read by every Gradio Blocks created from here on
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stopped server runs atexit too
    return cache


def main(app_dir: Path, build_dir: Path | None = None) -> None:
    """Serve the model found beside ``app_dir`` or named by the environment; ``build_dir`` is a checkout's output
    folder, tried last for the model, the lung segmenter and the examples."""
    logging.basicConfig(level=logging.INFO)
    bound_malloc_arenas()
    model = model_location(app_dir, build_dir)
    folder = fetch_model_folder(model) if model else None
    examples = examples_folder(app_dir, build_dir) if folder else None
    if folder is None:
        print(f"No trained model at {model or 'MODEL (unset)'}: set MODEL to a model folder or Hub id.")
    lifetime = int(os.environ.get("FILE_LIFETIME_S", FILE_LIFETIME_S))  # how long uploads and results are kept
    cache = private_cache()
    try:
        predictor = Predictor(folder, lung_segmenter(app_dir, build_dir)) if folder else None
    except (OutdatedModel, FileNotFoundError) as err:
        sys.exit(f"Cannot serve {model}: {err}")  # one line in the Space's log, no traceback
    demo = build_demo(predictor, examples, lifetime) if predictor else missing_model_demo(model or "MODEL (unset)")
    # what exists now is kept: the example thumbnails
    start_sweeper(cache, lifetime, keep=frozenset(cache.rglob("*")), file_sets=demo.temp_file_sets)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("PORT", "7860")),
        max_file_size=MAX_UPLOAD_BYTES,
        allowed_paths=[str(examples)] if examples else None,
        app_kwargs={"exception_handlers": quiet_refusals()},
    )
