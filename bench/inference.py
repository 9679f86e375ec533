"""CPU inference latency and throughput, with the test ROC AUC each path keeps.

Paths: transformers `pipeline()` (batch 1 and 8); the Space's predict as it was before issue #26 (the lung
segmenter's own backbone pass, Grad-CAM's graph through the whole backbone) side by side, in one interleaved run,
with today's (one shared backbone pass, in PyTorch and in onnxruntime), and without the heat map; the model
alone in PyTorch, onnxruntime fp32 and int8, and torch int8 dynamic quantisation. The Space paths report the
largest difference in COVID-19 probability and in lung attention from the path before #26 over the test split,
and the Space's path how often its attention warning fires there, per source and label. The Space rows' ROC AUC is
their own answers' over the films they answered.

A lungs-first model (`lung_focus` in its config.json) is measured on what it is given: the rows that call the
model directly take the test films focused as in training (covid_cxr.lungs.focus.lungs_first, so the focus's own
cost is not in their times), the Space rows focus each film themselves, and their differences are taken from the
model's answers on the training's focused films; the path before #26, which had no focus, is left out.
"""

from __future__ import annotations

import argparse
import copy
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from transformers import pipeline

from bench.common import interleaved, machine, percentile, report, test_split, timed
from covid_cxr.data.imaging import load_image
from covid_cxr.data.processor_size import processor_size
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.lungs.attention import lung_measures
from covid_cxr.lungs.fitting import read_mask, read_pairs
from covid_cxr.lungs.focus import lungs_first
from covid_cxr.lungs.measures import RATIO_WARNING, attention_warning, dice, implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
from covid_cxr.modeling.heatmap import grad_cam, outline, overlay
from covid_cxr.modeling.inference import CovidClassifier, run_model, seen_images, softmax
from covid_cxr.modeling.onnx_export import FP32_FILE, INT8_FILE, ONNX_DIR, OUTPUTS, export_onnx, make_session
from covid_cxr.modeling.scope_guard import pixel_reason
from covid_cxr.serving.predictor import OutOfScope, Predictor

BEFORE = "Space predict before #26: own lung pass, full Grad-CAM graph"
SHARED_TORCH = "Space predict, one shared pass, PyTorch"
SHARED_ONNX = "Space predict, one shared pass, onnxruntime (the Space's path)"


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


class BeforeShared:
    """The Space's analysis as it ran before issue #26, kept here as the baseline: Grad-CAM through a model whose
    parameters require gradients, then the segmenter's own 224 px backbone pass over the image seen."""

    def __init__(self, model_folder: str, segmenter: LungSegmenter, guard) -> None:
        self.classifier, self.segmenter, self.guard = CovidClassifier.from_pretrained(model_folder), segmenter, guard

    def analyse(self, source: bytes) -> tuple[float, float | None]:
        image = load_image(source).image
        if reason := pixel_reason(image):
            raise OutOfScope(reason)
        model, processor = self.classifier.model, self.classifier.processor
        pixels = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
        (seen,) = seen_images(pixels, processor)
        logits, features, cams = grad_cam(model, pixels, self.classifier.positive)
        if self.guard is not None and (reason := self.guard.reason(features[0])):
            raise OutOfScope(reason)
        (probability,) = self.segmenter.probabilities([seen])
        if reason := implausible_lungs(probability, self.segmenter.config.threshold):
            raise OutOfScope(reason)
        mask = probability >= self.segmenter.config.threshold
        outline(seen, mask), overlay(seen, cams[0])
        return float(softmax(logits)[0, self.classifier.positive]), lung_measures(cams[0], mask)[0]


def answers(analyse, encoded: list[bytes]) -> list[tuple[float, float | None] | None]:
    """(COVID-19 probability, lung attention[, its ratio]) per image, None when refused."""
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


def largest_differences(reference: list, other: list) -> dict[str, float | int]:
    pairs = [(a, b) for a, b in zip(reference, other, strict=True) if a is not None and b is not None]
    attention = [abs(a[1] - b[1]) for a, b in pairs if a[1] is not None and b[1] is not None]
    differences = {
        "max_probability_difference": max(abs(a[0] - b[0]) for a, b in pairs),
        "refusals_changed": sum((a is None) != (b is None) for a, b in zip(reference, other, strict=True)),
    }
    if attention:  # a reference without heat maps (the model's own answers) has no lung share to differ from
        differences |= {
            "max_lung_attention_difference": max(attention),
            "mean_lung_attention_difference": float(np.mean(attention)),
        }
    return differences


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


def lung_dice_by_input_size(segmenter: LungSegmenter, masks: Path, images: Path, sizes: tuple[int, ...]) -> dict:
    """Mean Dice against the reference lung masks with the segmenter's input at each size (every third mask; the
    head was fitted on them, so the figures compare sizes, they do not measure held-out accuracy)."""
    pairs = read_pairs(masks, images)[::3]
    loaded = [(load_image(p.image).image, read_mask(p.mask)) for p in pairs]
    result = {"masks": len(loaded)}
    for size in sizes:
        probe = copy.copy(segmenter)
        probe.config = type(segmenter.config)(**{**segmenter.config.__dict__, "image_size": size})
        result[f"dice_{size}px"] = float(np.mean([dice(probe.masks([im])[0], mask) for im, mask in loaded]))
    return result


def onnx_probabilities(session, processor, images) -> np.ndarray:
    logits = [
        session.run(
            [OUTPUTS[0]], {"pixel_values": processor(images[i : i + 32], return_tensors="pt")["pixel_values"].numpy()}
        )[0]
        for i in range(0, len(images), 32)
    ]
    return softmax(np.concatenate(logits))[:, 1]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--lungs", default="build/lungs", help="Lung segmenter the Space rows use, when present.")
    parser.add_argument("--lung_masks", default="../shared/cxr-lung-masks", help="Reference masks, when present.")
    parser.add_argument("--images", default="../shared/cxr", help="The images those masks belong to.")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()

    test = test_split(args.dataset)
    labels = np.asarray(test["label"])
    encoded = []
    for image in test["image"]:  # what the Space is sent: the films as they are
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    lungs = LungSegmenter.from_pretrained(args.lungs) if holds_segmenter(args.lungs) else None
    predictor = Predictor(args.model, lungs)  # as the Space runs it: onnxruntime, one shared pass
    seen = lungs_first(test, lungs) if predictor.focus else test  # what the model itself is given
    rgb = [image.convert("RGB") for image in seen["image"]]
    images = rgb[:16]

    export = export_onnx(Path(args.model), rgb[:32])  # the export the Space serves, checked on real test X-rays
    processor = predictor.processor
    in_torch = Predictor(args.model, lungs)
    in_torch.session = None
    classifier = pipeline("image-classification", model=args.model, device="cpu")
    fp32 = softmax(run_model(predictor.model, processor, rgb, 32).logits)[:, 1]
    auc = float(roc_auc_score(labels, fp32))
    onnx_fp32 = make_session(Path(args.model) / ONNX_DIR / FP32_FILE)
    onnx_int8 = make_session(Path(args.model) / ONNX_DIR / INT8_FILE)
    onnx_auc = float(roc_auc_score(labels, onnx_probabilities(onnx_fp32, processor, rgb)))
    onnx_int8_auc = float(roc_auc_score(labels, onnx_probabilities(onnx_int8, processor, rgb)))
    quantised = copy.deepcopy(predictor.model)  # the backbone's linear layers in int8, the head left in fp32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices; it still ships in torch 2.13
        backbone = torch.ao.quantization.quantize_dynamic(quantised.base_model, {torch.nn.Linear}, dtype=torch.qint8)
    setattr(quantised, quantised.base_model_prefix, backbone)
    int8_auc = float(roc_auc_score(labels, softmax(run_model(quantised, processor, rgb, 32).logits)[:, 1]))

    counter = iter(range(10**9))

    def one(analyse):
        return lambda: answers(analyse, [encoded[next(counter) % 16]])

    def shared(target: Predictor):
        return lambda data: (lambda r: (r.covid_probability, r.lung_attention, r.lung_attention_ratio))(
            target.analyse(data)
        )

    rows = []
    rows.append(latency_row("pipeline()", timed(lambda: classifier(images[next(counter) % 16]), args.repeats), 1, auc))
    rows.append(
        latency_row("pipeline()", timed(lambda: classifier(images[:8], batch_size=8), args.repeats // 3), 8, auc)
    )
    paths = {SHARED_ONNX: shared(predictor), SHARED_TORCH: shared(in_torch)}
    if lungs is not None and not predictor.focus:
        paths = {BEFORE: BeforeShared(args.model, lungs, predictor.guard).analyse} | paths
    side_by_side = interleaved({name: one(analyse) for name, analyse in paths.items()}, args.repeats)
    over_test = {name: answers(analyse, encoded) for name, analyse in paths.items()}
    reference = None
    if BEFORE in paths:
        reference = over_test[BEFORE]
    elif predictor.focus:  # the model's own answers on the films focused as in training
        reference = [(float(p), None) for p in fp32]
    for name in paths:
        extra = {} if reference is None or name == BEFORE else largest_differences(reference, over_test[name])
        rows.append(latency_row(name, side_by_side[name], 1, answered_auc(over_test[name], labels), **extra))
    without_heat = answers(lambda data: (predictor.analyse(data, heatmap=False).covid_probability, None), encoded)
    rows.append(
        latency_row(
            "Space predict, onnxruntime, no heat map",
            timed(one(lambda data: predictor.analyse(data, heatmap=False)), args.repeats),
            1,
            answered_auc(without_heat, labels),
        )
    )
    pixels = [processor(image, return_tensors="pt")["pixel_values"] for image in images]
    model_only = interleaved(
        {
            "PyTorch fp32": lambda: predictor.model(pixel_values=pixels[next(counter) % 16]),
            "onnxruntime fp32": lambda: onnx_fp32.run(
                [OUTPUTS[0]], {"pixel_values": pixels[next(counter) % 16].numpy()}
            ),
            "onnxruntime int8": lambda: onnx_int8.run(
                [OUTPUTS[0]], {"pixel_values": pixels[next(counter) % 16].numpy()}
            ),
            "torch int8 dynamic quantisation": lambda: quantised(pixel_values=pixels[next(counter) % 16]),
        },
        args.repeats,
    )
    aucs = {"PyTorch fp32": auc, "onnxruntime fp32": onnx_auc, "onnxruntime int8": onnx_int8_auc}
    with torch.no_grad():
        for name, seconds in model_only.items():
            rows.append(latency_row(f"model only, {name}", seconds, 1, aucs.get(name, int8_auc)))
    result = {
        **machine(),
        "model": args.model,
        "input_px": processor_size(processor),
        "threads": torch.get_num_threads(),
        "lungs": args.lungs if lungs else None,
        "lungs_first": bool(predictor.focus),
        "shared_layers": predictor.shared,
        "onnx_export": export,
        "rows": rows,
    }
    if lungs is not None:
        result["attention_warning"] = {
            "below": RATIO_WARNING,
            "groups": warning_rates(over_test[SHARED_ONNX], test["source"], [CLASS_NAMES[y] for y in labels.tolist()]),
        }
    if lungs is not None and Path(args.lung_masks).is_dir():
        result["lung_dice"] = lung_dice_by_input_size(
            lungs, Path(args.lung_masks), Path(args.images), (lungs.config.image_size, processor_size(processor))
        )
    return report(result, args.output)


if __name__ == "__main__":
    main()
