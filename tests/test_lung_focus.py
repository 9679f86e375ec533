"""Lungs first as one transformers model, on real X-rays: the focus inside the forward pass, the three ways to load
it (the package's registration, the modeling file it carries, neither), and the same answers from `pipeline()`, the
Space's path, `covid-cxr predict` and the ONNX graph."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors import safe_open
from safetensors.torch import load_file
from scipy import ndimage
from transformers import AutoImageProcessor, AutoModelForImageClassification, Dinov2ForImageClassification, pipeline

from covid_cxr.audit.occlusion import blur_image_outside
from covid_cxr.cli.predict import main as predict_main
from covid_cxr.data.processor_size import set_processor_size
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling import lungs_first
from covid_cxr.modeling.lungs_first import LungsFirstForImageClassification
from covid_cxr.serving.predictor import OutdatedModel, OutOfScope, Predictor
from covid_cxr.serving.wording import LUNGS_FIRST_WORDS, verdict_markdown
from covid_cxr.training.run import run
from covid_cxr.training.trainer import freeze_backbone, load_model
from tests.conftest import FIXTURE_ROOT, fit_standard, tiny_run_arguments

SIDE = 56
TRAINABLE_BLOCKS = 2  # the recipe's default, which tiny_run_arguments keeps
CALLER = """
import json, sys
sys.modules["covid_cxr"] = None  # this process cannot import the package
from transformers import pipeline
folder, files, trust = sys.argv[1], sys.argv[2:-1], sys.argv[-1] == "trust"
try:
    classifier = pipeline("image-classification", model=folder, trust_remote_code=trust or None)
except Exception as err:
    print("ANSWER", json.dumps({"refused": f"{type(err).__name__}: {err}"}))
else:
    print("ANSWER", json.dumps([{r["label"]: r["score"] for r in classifier(f)} for f in files]))
"""


def labelled_xray(side: int = 192) -> np.ndarray:
    """A real chest X-ray from the CC BY fixture with a burnt-in corner label, as many hospitals print one."""
    path = sorted((FIXTURE_ROOT / "images").glob("*.jpg"))[0]
    image = Image.open(path).convert("L").resize((side, side))
    ImageDraw.Draw(image).text((4, 4), "L PORTABLE AP", fill=255)
    return np.asarray(image)


def lung_like_mask(side: int) -> np.ndarray:
    mask = np.zeros((side, side), dtype=bool)
    mask[side // 4 : 3 * side // 4, side // 8 : 7 * side // 16] = True
    mask[side // 4 : 3 * side // 4, 9 * side // 16 : 7 * side // 8] = True
    return mask


def detail(pixels: np.ndarray) -> float:
    """Fine structure (text, edges): the spread of the Laplacian."""
    return float(ndimage.laplace(pixels.astype(np.float32)).std())


def test_the_focus_keeps_the_lungs_and_wipes_the_corner_label() -> None:
    pixels = labelled_xray()
    lungs = lung_like_mask(112)  # at the model's mask side, not the image's
    focused = np.asarray(blur_image_outside(Image.fromarray(pixels), lungs)).astype(int)
    inside = np.asarray(Image.fromarray(lungs).resize(pixels.shape[::-1])) > 0
    assert focused.shape == pixels.shape
    np.testing.assert_array_equal(focused[inside], pixels[inside])
    corner = (slice(0, 16), slice(0, 96))  # the label
    assert detail(focused[corner]) < detail(pixels[corner]) / 3
    assert np.abs(focused[~inside] - pixels[~inside]).mean() > 1


def test_the_modeling_file_needs_only_torch_and_transformers() -> None:
    """It travels in the model folder for callers without this package: nothing of covid_cxr may be in it."""
    tree = ast.parse(Path(lungs_first.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert imported <= {"__future__", "math", "dataclasses", "torch", "transformers"}


@pytest.fixture(scope="module")
def untrained(backbone: Path, lungs_folder: Path):
    """The one model over the test backbone and segmenter (head untrained), and its processor at SIDE px."""
    processor = AutoImageProcessor.from_pretrained(backbone)
    set_processor_size(processor, SIDE)
    model = load_model(str(backbone), LungSegmenter.from_pretrained(lungs_folder), TRAINABLE_BLOCKS)
    freeze_backbone(model, TRAINABLE_BLOCKS)  # as training does
    return model.eval(), processor


def test_the_model_focuses_each_film_inside_its_forward(untrained, small_dataset: Path) -> None:
    """Real films: the lungs the frozen segmenter finds keep their pixels, the rest is blurred; a film with no
    plausible lungs is classified whole, as training kept it."""
    model, processor = untrained
    films = datasets.load_from_disk(str(small_dataset))["test"]["image"][:6]
    pixels = processor([film.convert("RGB") for film in films], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        outputs = model(pixel_values=pixels, output_lungs=True)
    threshold = model.config.lung_finder["threshold"]
    assert outputs.lungs_plausible.all()  # real chest X-rays
    for given, focused, probability in zip(pixels, outputs.focused_pixel_values, outputs.lung_probability, strict=True):
        lungs = torch.nn.functional.interpolate(probability[None, None], size=given.shape[-2:], mode="bilinear")[0, 0]
        inside = lungs >= threshold
        torch.testing.assert_close(focused[:, inside], given[:, inside])
        assert (focused[:, ~inside] - given[:, ~inside]).abs().mean() > 0.01
    with torch.no_grad():
        plain = model(pixel_values=torch.zeros(1, 3, SIDE, SIDE), output_lungs=True)
    assert not plain.lungs_plausible[0]
    torch.testing.assert_close(plain.focused_pixel_values, torch.zeros(1, 3, SIDE, SIDE))


def test_training_freezes_the_segmenter_inside(untrained) -> None:
    model, _ = untrained
    assert not any(p.requires_grad for p in model.lungs.parameters())
    assert any(p.requires_grad for p in model.classifier.parameters())


def test_the_finder_shares_the_classifiers_frozen_blocks(
    untrained, backbone: Path, lungs_folder: Path, tmp_path: Path
) -> None:
    """The finder's blocks are the classifier's own frozen ones (one copy, holding the finder's weights, which the
    Trainer's checkpoints reload without a missing-key warning); a run that trains every block keeps the finder
    apart, so training cannot move it."""
    model, _ = untrained
    finder = LungSegmenter.from_pretrained(lungs_folder)
    depth = finder.backbone.config.num_hidden_layers
    assert model.config.lung_finder["shared_modules"] == depth + 1  # the embeddings and every block it runs
    classifier = model.dinov2.state_dict()
    assert len(model.shared_finder_weights) == len([n for n in finder.backbone.state_dict() if "layernorm" not in n])
    for name in model.shared_finder_weights:
        torch.testing.assert_close(classifier[name], model.lungs.backbone.state_dict()[name], rtol=0, atol=0)
    torch.testing.assert_close(model.lungs.state_dict(), finder.state_dict(), rtol=0, atol=0)
    model.save_pretrained(tmp_path, save_original_format=False)  # as the Trainer writes its checkpoints
    reloaded = model.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
    assert set(reloaded.missing_keys) == set(model._keys_to_ignore_on_save)  # which the Trainer does not warn of
    assert load_model(str(backbone), finder, trainable_blocks=-1).config.lung_finder["shared_modules"] == 0


@pytest.fixture(scope="module")
def lungs_first_model(tmp_path_factory, backbone: Path, small_dataset: Path, lungs_folder: Path) -> Path:
    output = tmp_path_factory.mktemp("lungs-first")
    run(*tiny_run_arguments(backbone, small_dataset, output, lungs=lungs_folder, onnx=True))
    return output


def test_a_lungs_first_model_is_one_folder(lungs_first_model: Path, lungs_folder: Path) -> None:
    config = json.loads((lungs_first_model / "config.json").read_text())
    assert config["model_type"] == "covid-cxr-lungs-first" and "lung_focus" not in config
    assert config["auto_map"] == {
        "AutoConfig": "lungs_first.LungsFirstConfig",
        "AutoModelForImageClassification": "lungs_first.LungsFirstForImageClassification",
    }
    assert (lungs_first_model / "lungs_first.py").read_text() == Path(lungs_first.__file__).read_text()
    assert not list(lungs_first_model.glob("*.bin")) and (lungs_first_model / "model.safetensors").is_file()
    with safe_open(lungs_first_model / "model.safetensors", "pt") as weights:  # the shared blocks stored once
        assert not [name for name in weights.keys() if name.startswith("lungs.backbone.e")]  # noqa: SIM118
    loaded = AutoModelForImageClassification.from_pretrained(lungs_first_model)  # the finder's from the one copy
    torch.testing.assert_close(loaded.lungs.state_dict(), LungSegmenter.from_pretrained(lungs_folder).state_dict())
    card = (lungs_first_model / "README.md").read_text()
    assert "This model is lungs first" in card and "trust_remote_code=True" in card
    assert f'model="{lungs_first_model}"' in card  # the card's calls name the folder, no placeholder


def test_no_lung_focus_trains_the_plain_classifier(backbone: Path, small_dataset: Path, lungs_folder, tmp_path) -> None:
    arguments = tiny_run_arguments(backbone, small_dataset, tmp_path / "model", lungs=lungs_folder, lung_focus=False)
    arguments[3].max_steps = 1
    arguments[2].linear_probe = False
    run(*arguments)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "dinov2"


def test_a_segmenter_folder_that_holds_none_stops_before_training(
    backbone: Path, small_dataset: Path, tmp_path
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--lung_segmenter .*no lung segmenter there"):
        run(*tiny_run_arguments(backbone, small_dataset, tmp_path / "model", lungs=tmp_path / "empty"))
    assert not list((tmp_path / "model").glob("checkpoint-*"))


def caller(folder: Path, files: list[Path], trust: bool, tmp_path: Path) -> dict | list:
    """`pipeline()` in a process that cannot import covid_cxr: the answers, or why loading refused."""
    env = os.environ | {"HF_MODULES_CACHE": str(tmp_path / "modules")}
    command = [sys.executable, "-c", CALLER, str(folder), *map(str, files), "trust" if trust else "no"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.rsplit("ANSWER", 1)[-1])  # after transformers' own prompt


def test_every_path_gives_the_same_answer(lungs_first_model: Path, small_dataset: Path, tmp_path: Path) -> None:
    """Real test films: pipeline() after `import covid_cxr`, pipeline(trust_remote_code=True) on a copy of the folder
    in a process without the package, the Space's path (the ONNX graph) and `covid-cxr predict` agree within 1e-4;
    without either, loading refuses."""
    films = datasets.load_from_disk(str(small_dataset))["test"]["image"][:6]
    files = []
    for index, film in enumerate(films):
        film.save(tmp_path / f"film{index}.png")
        files.append(tmp_path / f"film{index}.png")
    registered = pipeline("image-classification", model=str(lungs_first_model))
    assert isinstance(registered.model, LungsFirstForImageClassification)
    expected = np.asarray([next(r["score"] for r in registered(str(f)) if r["label"] == "covid") for f in files])
    copy = shutil.copytree(lungs_first_model, tmp_path / "copy", ignore=shutil.ignore_patterns("checkpoint-*"))
    remote = caller(copy, files, True, tmp_path)
    np.testing.assert_allclose([answer["covid"] for answer in remote], expected, atol=1e-4)
    refused = caller(copy, files, False, tmp_path)
    assert "trust_remote_code=True" in refused["refused"]
    predictor = Predictor(lungs_first_model)
    assert predictor.session is not None  # the Space's path: the ONNX graph of the whole model
    space = []
    for path in files:
        try:
            space.append(predictor.analyse(path, heatmap=False).covid_probability)
        except OutOfScope:  # the scope guard fitted on a tiny validation split may refuse a film
            space.append(None)
    kept = [i for i, p in enumerate(space) if p is not None]
    assert kept and np.abs(np.asarray([space[i] for i in kept]) - expected[kept]).max() <= 1e-4
    predict_main(["--model", str(lungs_first_model), "--inputs", *map(str, files), "--output", str(tmp_path / "o.csv")])
    with (tmp_path / "o.csv").open() as handle:
        scored = {row["file"]: row for row in csv.DictReader(handle)}
    for i in kept:
        assert float(scored[str(files[i])]["covid_probability"]) == pytest.approx(expected[i], abs=1e-4)


def test_the_space_shows_the_film_as_the_model_saw_it(
    lungs_first_model: Path, small_dataset: Path, tmp_path: Path
) -> None:
    predictor = Predictor(lungs_first_model)
    predictor.guard = None
    film = datasets.load_from_disk(str(small_dataset))["test"][0]["image"]
    film.save(tmp_path / "film.png")
    answer = predictor.analyse(tmp_path / "film.png")
    assert answer.lungs_first and answer.lung_attention is not None
    assert LUNGS_FIRST_WORDS in verdict_markdown(answer, predictor.threshold)  # said plainly
    whole = predictor.processor(film.convert("RGB"), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        focused = predictor.model(pixel_values=whole, output_lungs=True).focused_pixel_values
    assert not torch.equal(focused, whole)  # what is shown was focused, not the whole film


def test_a_film_without_lungs_is_refused_by_the_space(lungs_first_model: Path) -> None:
    """A grey photograph (scikit-image's camera man) passes the pixel checks; the lungs the model finds rule it
    out, with the feature check switched off."""
    import io

    from skimage import data

    predictor = Predictor(lungs_first_model)
    predictor.guard = None
    buffer = io.BytesIO()
    Image.fromarray(data.camera()).save(buffer, format="PNG")
    with pytest.raises(OutOfScope, match="no plausible lung fields"):
        predictor.analyse(buffer.getvalue(), heatmap=False)


def test_a_model_focused_outside_itself_is_refused(lungs_first_model: Path, tmp_path: Path) -> None:
    """A folder written before lungs first was one model (`lung_focus` in a plain DINOv2 config) would otherwise
    be served on whole films, which it never saw."""
    old = shutil.copytree(lungs_first_model, tmp_path / "old", ignore=shutil.ignore_patterns("checkpoint-*", "onnx"))
    model = Dinov2ForImageClassification.from_pretrained(old, use_safetensors=True)
    model.config.lung_focus = {"blur": 0.04}
    model.save_pretrained(tmp_path / "older")
    shutil.copy(old / "preprocessor_config.json", tmp_path / "older")
    with pytest.raises(OutdatedModel, match="train it again"):
        Predictor(tmp_path / "older")


def test_the_readme_use_blocks_run_as_pasted(lungs_first_model: Path, lung_data, lungs_folder: Path, tmp_path) -> None:
    """The README's "Use the model" Python blocks, verbatim and in order, in a folder whose build/model is a
    lungs-first model, whose build/lungs/pipeline is the standard segmenter and whose xray.png is a real film: the
    classifier answers with the decision at the stored threshold, and the segmenter gives a mask at the film's
    size."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Use the model") :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2
    (tmp_path / "build" / "lungs").mkdir(parents=True)
    (tmp_path / "build" / "model").symlink_to(lungs_first_model, target_is_directory=True)
    fit_standard(lung_data, lungs_folder, tmp_path / "build" / "lungs" / "pipeline")
    film = sorted((FIXTURE_ROOT / "images").glob("*.jpg"))[0]
    shutil.copy(film, tmp_path / "xray.png")
    shown = "{'scores': scores, 'covid': bool(covid), 'mask': list(lungs.size)}"
    script = "\n".join(blocks) + f"\nimport json\nprint('ANSWER', json.dumps({shown}))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.rsplit("ANSWER", 1)[-1])
    assert set(answer["scores"]) == {"covid", "non_covid"} and sum(answer["scores"].values()) == pytest.approx(1)
    threshold = json.loads((lungs_first_model / "config.json").read_text())["decision_threshold"]
    assert answer["covid"] == (answer["scores"]["covid"] >= threshold)
    assert answer["mask"] == list(Image.open(film).size)
