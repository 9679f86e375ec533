"""Scope guard: how many real test X-rays it wrongly refuses, and how many non-X-ray images it catches.

Non-X-ray images: every sample image shipped in scikit-image (photos, drawings, microscopy, text, a retina
fundus, ...), plus blank frames, a rendered screenshot-like page and cropped strips of real X-rays.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from bench.common import machine, report, test_split
from covid_cxr.data.imaging import ImageError
from covid_cxr.serving.predictor import OutOfScope, Predictor


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


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    predictor = Predictor(args.model)
    test = test_split(args.dataset)
    refused = [verdict(predictor, test[i]["image"]) for i in tqdm(range(test.num_rows), desc="test X-rays")]
    false_rejects = [(test[i]["file_name"], v) for i, v in enumerate(refused) if v != "scored"]
    others = non_xray_images(test[0]["image"])
    caught = {name: verdict(predictor, image) for name, image in tqdm(others.items(), desc="non-X-rays")}
    result = {
        **machine(),
        "model": args.model,
        "test_xrays": test.num_rows,
        "false_rejects": len(false_rejects),
        "false_reject_rate": len(false_rejects) / test.num_rows,
        "false_reject_examples": false_rejects[:10],
        "non_xrays": len(caught),
        "caught": sum(v != "scored" for v in caught.values()),
        "catch_rate": sum(v != "scored" for v in caught.values()) / len(caught),
        "per_image": caught,
    }
    return report(result, args.output)


if __name__ == "__main__":
    main()
