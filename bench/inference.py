"""CPU inference latency and throughput, with the test ROC AUC each path keeps.

Paths: transformers `pipeline()` (batch 1 and 8), the Space's predict function with and without the Grad-CAM
heat map (with the lung segmenter when one is found, as the Space runs, and once without it), and int8 dynamic
quantisation of the linear layers (a faster path that must not lose AUC).
"""

from __future__ import annotations

import argparse
import copy
import io
import warnings

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from transformers import pipeline

from bench.common import machine, percentile, report, test_split, timed
from covid_cxr.data.transforms import processor_size
from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
from covid_cxr.modeling.inference import run_model, softmax
from covid_cxr.serving.predictor import Predictor


def latency_row(name: str, seconds: list[float], batch: int, auc: float | None) -> dict:
    return {
        "path": name,
        "batch": batch,
        "p50_ms": 1000 * percentile(seconds, 50),
        "p95_ms": 1000 * percentile(seconds, 95),
        "images_per_s": batch / float(np.median(seconds)),
        "test_roc_auc": auc,
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--lungs", default="build/lungs", help="Lung segmenter the Space rows use, when present.")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()

    test = test_split(args.dataset)
    labels = np.asarray(test["label"])
    images = [test[i]["image"] for i in range(16)]
    encoded = []
    for image in images[:8]:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())

    lungs = LungSegmenter.from_pretrained(args.lungs) if holds_segmenter(args.lungs) else None
    predictor = Predictor(args.model, lungs)  # as the Space runs it
    classifier = pipeline("image-classification", model=args.model, device="cpu")
    fp32 = softmax(run_model(predictor.model, predictor.processor, test["image"], 32).logits)[:, 1]
    auc = float(roc_auc_score(labels, fp32))
    quantised = copy.deepcopy(predictor.model)  # the backbone's linear layers in int8, the head left in fp32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices; it still ships in torch 2.13
        backbone = torch.ao.quantization.quantize_dynamic(quantised.base_model, {torch.nn.Linear}, dtype=torch.qint8)
    setattr(quantised, quantised.base_model_prefix, backbone)
    int8 = softmax(run_model(quantised, predictor.processor, test["image"], 32).logits)[:, 1]
    int8_auc = float(roc_auc_score(labels, int8))

    rows = []
    counter = iter(range(10**9))
    rows.append(latency_row("pipeline()", timed(lambda: classifier(images[next(counter) % 16]), args.repeats), 1, auc))
    rows.append(
        latency_row("pipeline()", timed(lambda: classifier(images[:8], batch_size=8), args.repeats // 3), 8, auc)
    )
    rows.append(
        latency_row(
            "Space predict, no heat map",
            timed(lambda: predictor.analyse(encoded[next(counter) % 8], heatmap=False), args.repeats),
            1,
            auc,
        )
    )
    rows.append(
        latency_row(
            "Space predict, with Grad-CAM",
            timed(lambda: predictor.analyse(encoded[next(counter) % 8], heatmap=True), args.repeats),
            1,
            auc,
        )
    )
    if lungs is not None:
        bare = Predictor(args.model)
        rows.append(
            latency_row(
                "Space predict, with Grad-CAM, without the lung segmenter",
                timed(lambda: bare.analyse(encoded[next(counter) % 8], heatmap=True), args.repeats),
                1,
                auc,
            )
        )
    rows.append(
        latency_row(
            "int8 dynamic quantisation (model only)",
            timed(lambda: run_model(quantised, predictor.processor, [images[next(counter) % 16]]), args.repeats),
            1,
            int8_auc,
        )
    )
    rows.append(
        latency_row(
            "fp32 model only (same loop)",
            timed(lambda: run_model(predictor.model, predictor.processor, [images[next(counter) % 16]]), args.repeats),
            1,
            auc,
        )
    )
    result = {
        **machine(),
        "model": args.model,
        "input_px": processor_size(predictor.processor),
        "threads": torch.get_num_threads(),
        "lungs": args.lungs if lungs else None,
        "rows": rows,
    }
    return report(result, args.output)


if __name__ == "__main__":
    main()
