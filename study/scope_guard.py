"""Scope guard: how many real test X-rays it wrongly refuses, and how many non-X-ray images it catches.

Non-X-ray images: every sample image shipped in scikit-image (photos, drawings, microscopy, text, a retina
fundus, ...), plus blank frames, a rendered screenshot-like page and cropped strips of real X-rays.

Measured for the whole guard as the Space runs it (pixels, features, then the lung fields when a segmenter is
given), and for the lung-field check on its own, on every image, to show what it adds and what it costs.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from covid_cxr.data.imaging import ImageError
from covid_cxr.lungs.measures import implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
from covid_cxr.modeling.inference import seen_images
from covid_cxr.serving.predictor import OutOfScope, Predictor
from devtools.measuring import machine, report, test_split


def non_xray_images(xray: Image.Image) -> dict[str, Image.Image]:
    import skimage
    from skimage import data

    images = {}
    for path in sorted((Path(skimage.__file__).parent / "data").glob("*")):
        if path.suffix.lower() in (".png", ".jpg"):
            images[f"skimage:{path.stem}"] = Image.open(path)
    images["skimage:lfw_face"] = Image.fromarray((data.lfw_subset()[0] * 255).astype(np.uint8)).resize((200, 200))
    images["blank:black"] = Image.new("L", (512, 512), 0)
    images["blank:grey"] = Image.new("L", (512, 512), 128)
    page = Image.new("RGB", (1280, 800), "white")
    draw = ImageDraw.Draw(page)
    for row in range(0, 800, 24):
        draw.text((20, row), "Patient list - ward 4 - chest X-ray requests - " * 3, fill="black")
    images["screenshot:text_page"] = page
    images["strip:xray_crop"] = xray.crop((0, 0, xray.width, xray.height // 4))
    return images


def _as_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def verdict(predictor: Predictor, image: Image.Image) -> str:
    try:
        predictor.analyse(_as_png(image), heatmap=False)
    except OutOfScope as err:
        return f"refused: {err}"
    except ImageError as err:
        return f"unreadable: {err}"
    return "scored"


def lung_verdict(predictor: Predictor, image: Image.Image) -> str:
    """The lung-field check alone, on the image as the model would see it."""
    pixels = predictor.processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
    if predictor.lungs_first:  # the lungs the model itself finds
        with torch.no_grad():
            probability = predictor.model(pixel_values=pixels, output_lungs=True).lung_probability[0].numpy()
    else:
        (probability,) = predictor.segmenter.probabilities(seen_images(pixels, predictor.processor))
    reason = implausible_lungs(probability, predictor.lung_threshold)
    return f"refused: {reason}" if reason else "scored"


def tally(verdicts: dict[str, str]) -> dict[str, object]:
    refused = {name: v for name, v in verdicts.items() if v != "scored"}
    return {"refused": len(refused), "rate": len(refused) / len(verdicts), "examples": dict(list(refused.items())[:10])}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--lungs", default="build/lungs", help="Lung segmenter (`make lungs`); left out if absent.")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    lungs = LungSegmenter.from_pretrained(args.lungs) if holds_segmenter(args.lungs) else None
    predictor = Predictor(args.model, lungs)
    test = test_split(args.dataset)
    xrays = {test[i]["file_name"]: test[i]["image"] for i in range(test.num_rows)}
    others = non_xray_images(test[0]["image"])
    guard = {name: verdict(predictor, image) for name, image in tqdm(xrays.items(), desc="test X-rays")}
    caught = {name: verdict(predictor, image) for name, image in tqdm(others.items(), desc="non-X-rays")}
    false_rejects, catches = tally(guard), tally(caught)
    result = {
        **machine(),
        "model": args.model,
        "lungs": "the model's own lung finder" if predictor.lungs_first else (f"`{args.lungs}`" if lungs else None),
        "test_xrays": len(xrays),
        "false_rejects": false_rejects["refused"],
        "false_reject_rate": false_rejects["rate"],
        "false_reject_examples": false_rejects["examples"],
        "non_xrays": len(caught),
        "caught": catches["refused"],
        "catch_rate": catches["rate"],
        "per_image": caught,
    }
    if predictor.lung_threshold is not None:
        lung_xrays = {name: lung_verdict(predictor, image) for name, image in tqdm(xrays.items(), desc="lungs alone")}
        lung_others = {name: lung_verdict(predictor, image) for name, image in others.items()}
        result["lung_check_alone"] = {
            "false_rejects": tally(lung_xrays),
            "caught": tally(lung_others),
            "per_image": lung_others,
        }
    return report(result, args.output)


if __name__ == "__main__":
    main()
