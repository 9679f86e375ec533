"""CPU inference latency and throughput, with the test ROC AUC each path keeps and what a full-size film costs.

Paths, timed in one interleaved run (each round calls every path once): the model alone (PyTorch, onnxruntime),
transformers `pipeline()` on one film, and the Space's whole answer (decode, scope guard, lungs, heat map,
decision: onnxruntime, as the Space runs it, and PyTorch), without the heat map too; `pipeline()` on a batch of 8
is timed after them. For a lungs-first model every path scores the film as it is: the model rows include finding
the lungs and the blur. The Space's answer is also timed on real test films upscaled to 2,048 and 3,000 px (PNG,
what a digitised film or a DICOM export weighs), beside the decoding of those files alone: beyond its decoding the
answer must not grow with the film. Each path's largest COVID-19 probability difference from `pipeline()`'s over
the whole test split says whether the paths answer the same; the Space's attention warning rate is counted per
source and label.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from transformers import pipeline

from covid_cxr.data.imaging import load_image
from covid_cxr.data.processor_size import processor_size
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.lungs.measures import RATIO_WARNING, attention_warning
from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
from covid_cxr.model_folder import ONNX_DIR, ONNX_MODEL
from covid_cxr.modeling.inference import run_model, softmax
from covid_cxr.modeling.onnx_export import OUTPUTS, make_session
from covid_cxr.serving.predictor import OutOfScope, Predictor
from devtools.measuring import interleaved, machine, percentile, report, test_split, timed

SPACE = "Space predict, onnxruntime (the Space's path)"
FULL_SIZES = (2048, 3000)  # the long side of the upscaled films: what real CR/DX films measure
FULL_SIZE_FILMS = 8


def latency_row(name: str, seconds: list[float], batch: int, auc: float | None, **extra: object) -> dict:
    return {
        "path": name,
        "batch": batch,
        "p50_ms": 1000 * percentile(seconds, 50),
        "p95_ms": 1000 * percentile(seconds, 95),
        "images_per_s": batch / float(np.median(seconds)),
        "test_roc_auc": auc,
        **extra,
    }


def answers(analyse, encoded: list[bytes]) -> list[tuple | None]:
    """(COVID-19 probability, lung attention, its ratio) per file, None when refused."""
    results = []
    for data in encoded:
        try:
            results.append(analyse(data))
        except OutOfScope:
            results.append(None)
    return results


def answered_auc(answered: list[tuple | None], labels: np.ndarray) -> float:
    """ROC AUC of a path's own COVID-19 probabilities over the films it answered (refusals left out)."""
    kept = [i for i, answer in enumerate(answered) if answer is not None]
    return float(roc_auc_score(labels[kept], [answered[i][0] for i in kept]))


def largest_difference(reference: np.ndarray, answered: list[tuple | None]) -> dict[str, float | int]:
    """The largest COVID-19 probability difference from `reference` over the films answered, and how many were
    refused."""
    kept = [i for i, answer in enumerate(answered) if answer is not None]
    gap = max(abs(answered[i][0] - reference[i]) for i in kept)
    return {"max_probability_difference": float(gap), "refused": len(answered) - len(kept)}


def warning_rates(space: list[tuple | None], sources: list[str], labels: list[str]) -> list[dict[str, object]]:
    """Per source and label of the test split: its images, those the Space answered with a heat map, and the share
    of those its attention warning fired on (covid_cxr.lungs.measures.attention_warning)."""
    answered = np.asarray([answer is not None and answer[2] is not None for answer in space])
    warned = np.asarray([bool(ok) and attention_warning(answer[2]) for ok, answer in zip(answered, space, strict=True)])
    sources, labels = np.asarray(sources), np.asarray(labels)
    groups = []
    for source, label in sorted(set(zip(sources.tolist(), labels.tolist(), strict=True))):
        group = (sources == source) & (labels == label)
        measured = group & answered
        groups.append({
            "source": source,
            "label": label,
            "images": int(group.sum()),
            "answered": int(measured.sum()),
            "warned": float(warned[measured].mean()) if measured.any() else None,
        })  # fmt: skip
    return groups


def png(image: Image.Image, side: int | None = None) -> bytes:
    """The film as PNG bytes, its long side upscaled to `side` (bicubic) when given."""
    if side is not None:
        scale = side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def full_size_rows(predictor: Predictor, films: list[Image.Image], repeats: int) -> list[dict]:
    """The Space's answer and the decoding alone, on films at the test split's size and upscaled to FULL_SIZES."""
    sizes = {"test split size": None} | {f"{side} px": side for side in FULL_SIZES}
    encoded = {name: [png(film, side) for film in films] for name, side in sizes.items()}
    counter = iter(range(10**9))
    paths = {}
    for name, files in encoded.items():
        paths[f"{SPACE}, {name}"] = lambda files=files: predictor.analyse(files[next(counter) % len(files)])
        paths[f"decoding alone, {name}"] = lambda files=files: load_image(files[next(counter) % len(files)])
    times = interleaved(paths, repeats)
    return [latency_row(name, seconds, 1, None) for name, seconds in times.items()]


def onnx_probabilities(session, processor, images: list[Image.Image]) -> np.ndarray:
    """P(covid) of the ONNX graph over the films, 32 at a time."""
    logits = []
    for start in range(0, len(images), 32):
        pixels = processor(images[start : start + 32], return_tensors="pt")["pixel_values"].numpy()
        logits += session.run([OUTPUTS[0]], {"pixel_values": pixels})
    return softmax(np.concatenate(logits))[:, 1]


def space_paths(predictor: Predictor, in_torch: Predictor) -> dict[str, object]:
    """The Space's answer, file bytes in, (probability, lung share, ratio) out: in onnxruntime, PyTorch, no heat."""

    def answer(target: Predictor, heatmap: bool = True):
        return lambda data: (lambda r: (r.covid_probability, r.lung_attention, r.lung_attention_ratio))(
            target.analyse(data, heatmap=heatmap)
        )

    return {
        SPACE: answer(predictor),
        "Space predict, PyTorch": answer(in_torch),
        "Space predict, onnxruntime, no heat map": answer(predictor, heatmap=False),
    }


def timed_rows(predictor, session, classifier, rgb, encoded, paths, repeats: int) -> dict[str, list[float]]:
    """The model alone, pipeline() and the Space's paths on one film each, in one interleaved run."""
    counter = iter(range(10**9))
    pixels = [predictor.processor(image, return_tensors="pt")["pixel_values"] for image in rgb[:16]]
    model_only = {
        "model only, PyTorch": lambda: predictor.model(pixel_values=pixels[next(counter) % 16]),
        "model only, onnxruntime": lambda: session.run(
            [OUTPUTS[0]], {"pixel_values": pixels[next(counter) % 16].numpy()}
        ),
        "pipeline()": lambda: classifier(rgb[next(counter) % 16]),
    }
    space = {name: (lambda a=analyse: answers(a, [encoded[next(counter) % 16]])) for name, analyse in paths.items()}
    with torch.no_grad():
        return interleaved(model_only | space, repeats)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--lungs", default="build/lungs", help="Lung segmenter for a model that is not lungs first.")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()

    test = test_split(args.dataset)
    labels = np.asarray(test["label"])
    encoded = [png(image) for image in test["image"]]  # what the Space is sent: the films as they are
    lungs = LungSegmenter.from_pretrained(args.lungs) if holds_segmenter(args.lungs) else None
    predictor = Predictor(args.model, lungs)  # as the Space runs it: onnxruntime, one pass
    in_torch = Predictor(args.model, lungs)
    in_torch.session = None
    rgb = [image.convert("RGB") for image in test["image"]]
    classifier = pipeline("image-classification", model=args.model, device="cpu")
    expected = np.asarray([next(r["score"] for r in classifier(image) if r["label"] == "covid") for image in rgb])
    fp32 = softmax(run_model(predictor.model, predictor.processor, rgb, 32).logits)[:, 1]
    session = make_session(Path(args.model) / ONNX_DIR / ONNX_MODEL)
    in_onnx = onnx_probabilities(session, predictor.processor, rgb)
    paths = space_paths(predictor, in_torch)
    over_test = {name: answers(analyse, encoded) for name, analyse in paths.items()}
    aucs = {"model only, PyTorch": fp32, "model only, onnxruntime": in_onnx, "pipeline()": expected}
    rows = []
    for name, seconds in timed_rows(predictor, session, classifier, rgb, encoded, paths, args.repeats).items():
        if name in paths:
            extra = largest_difference(expected, over_test[name])
            rows.append(latency_row(name, seconds, 1, answered_auc(over_test[name], labels), **extra))
        else:
            rows.append(latency_row(name, seconds, 1, float(roc_auc_score(labels, aucs[name]))))
    batched = timed(lambda: classifier(rgb[:8], batch_size=8), args.repeats // 3)
    rows.append(latency_row("pipeline()", batched, 8, float(roc_auc_score(labels, expected))))
    result = {
        **machine(),
        "model": args.model,
        "input_px": processor_size(predictor.processor),
        "threads": torch.get_num_threads(),
        "lungs_first": predictor.lungs_first,
        "test_images": len(encoded),
        "onnx_against_pytorch": float(np.abs(in_onnx - fp32).max()),
        "pipeline_against_model": float(np.abs(expected - fp32).max()),
        "rows": rows,
        "full_size_films": FULL_SIZE_FILMS,
        "full_size": full_size_rows(predictor, list(test["image"])[:FULL_SIZE_FILMS], max(10, args.repeats // 3)),
    }
    if predictor.lung_threshold is not None:
        result["attention_warning"] = {
            "below": RATIO_WARNING,
            "groups": warning_rates(over_test[SPACE], test["source"], [CLASS_NAMES[y] for y in labels.tolist()]),
        }
    return report(result, args.output)


if __name__ == "__main__":
    main()
