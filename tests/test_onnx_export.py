"""The ONNX export beside the safetensors, and the one backbone pass the Space shares with the lung segmenter, on
a tiny random DINOv2 classifier (fast tier) and on the trained model of the slow tier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from transformers import BitImageProcessor, Dinov2Config, Dinov2ForImageClassification

from covid_cxr.lungs.segmenter import LungSegmenter, SegmenterConfig
from covid_cxr.model_folder import ONNX_CHECK, ONNX_DIR, ONNX_MODEL
from covid_cxr.modeling.heatmap import grad_cam, head_cam, token_grid
from covid_cxr.modeling.onnx_export import current_session, export_onnx
from covid_cxr.serving.predictor import Predictor

TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, patch_size=14)


def tiny_classifier(folder: Path) -> Dinov2ForImageClassification:
    """A random DINOv2 classifier at 56 px (4 x 4 patches), weights rounded to bf16 as a segmenter stores them."""
    torch.manual_seed(0)
    config = Dinov2Config(**TINY, image_size=56, num_labels=2, id2label={0: "non_covid", 1: "covid"})
    config.label2id = {"non_covid": 0, "covid": 1}
    model = Dinov2ForImageClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch.bfloat16).float())
    model.save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}).save_pretrained(folder)
    return model


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    tiny_classifier(tmp_path / "model")
    return tmp_path / "model"


def xray(fixture_root: Path) -> Image.Image:
    return Image.open(next(iter(sorted((fixture_root / "images").glob("*.jpg")))))


def test_export_writes_the_transformers_js_layout_and_matches_pytorch(tiny_folder: Path, fixture_root: Path) -> None:
    images = [Image.open(p) for p in sorted((fixture_root / "images").glob("*.jpg"))[:4]]
    check = export_onnx(tiny_folder, images)
    assert (tiny_folder / ONNX_DIR / ONNX_MODEL).is_file()
    assert not (tiny_folder / ONNX_DIR / "model_quantized.onnx").exists()  # int8 moved a model's answers too far
    assert check["images"] == 4 and check["onnx_max_logit_difference"] < 1e-4
    assert json.loads((tiny_folder / ONNX_DIR / ONNX_CHECK).read_text()) == check


def test_the_predictor_serves_onnx_only_while_it_matches_the_weights(tiny_folder: Path, fixture_root: Path) -> None:
    export_onnx(tiny_folder)
    fast, slow = Predictor(tiny_folder), Predictor(tiny_folder)
    slow.session = None
    assert fast.session is not None
    pixels = fast.processor(xray(fixture_root).convert("RGB"), return_tensors="pt")["pixel_values"]
    onnx, torch_pass = fast.forward(pixels, heatmap=True), slow.forward(pixels, heatmap=True)
    np.testing.assert_allclose(onnx.logits, torch_pass.logits, atol=1e-4)
    np.testing.assert_allclose(onnx.cam, torch_pass.cam, atol=1e-3)
    np.testing.assert_allclose(onnx.scope, torch_pass.scope, atol=1e-4)
    model = Dinov2ForImageClassification.from_pretrained(tiny_folder)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # retrained: the export no longer matches
    model.save_pretrained(tiny_folder)
    assert current_session(tiny_folder) is None


def test_head_only_grad_cam_equals_grad_cam(tiny_folder: Path, fixture_root: Path) -> None:
    model = Dinov2ForImageClassification.from_pretrained(tiny_folder).eval()
    processor = BitImageProcessor.from_pretrained(tiny_folder)
    pixels = processor(xray(fixture_root).convert("RGB"), return_tensors="pt")["pixel_values"]
    _, _, cam = grad_cam(model, pixels, 1)
    with torch.no_grad():
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(head_cam(model, hidden[-1], token_grid(pixels, model), 1), cam, atol=1e-5)


def test_segmenter_continues_from_the_classifiers_shared_blocks(tiny_folder: Path, fixture_root: Path) -> None:
    """Blocks 0-2 frozen, block 3 fine-tuned: the segmenter takes hidden state 3 over and runs its own block 3."""
    classifier = Dinov2ForImageClassification.from_pretrained(tiny_folder).eval()
    segmenter = LungSegmenter(SegmenterConfig(backbone=classifier.config.to_dict(), image_size=56, layers=(2, 4)))
    segmenter.backbone.load_state_dict(classifier.dinov2.state_dict())
    with torch.no_grad():
        classifier.dinov2.encoder.layer[3].mlp.fc1.weight.add_(0.5)
    assert segmenter.shared_layers(classifier.dinov2) == 4  # embeddings and blocks 0, 1, 2
    pixels = segmenter.pixel_values([xray(fixture_root)])
    with torch.no_grad():
        hidden = classifier(pixel_values=pixels, output_hidden_states=True).hidden_states
    shared = segmenter.tokens_from(hidden, 4, token_grid(pixels, classifier))
    torch.testing.assert_close(shared, segmenter.tokens(pixels), atol=1e-5, rtol=1e-5)


def test_build_model_export_matches_pytorch(trained: tuple[Path, dict], small_dataset: Path) -> None:
    import datasets

    test = datasets.load_from_disk(str(small_dataset))["test"]
    check = export_onnx(trained[0], [test[i]["image"] for i in range(4)])
    assert check["onnx_max_probability_difference"] < 1e-4
    assert Predictor(trained[0]).session is not None


def test_only_a_classifier_with_token_states_is_exported(tiny_folder: Path) -> None:
    """A CNN's hidden states are maps of many shapes: the export (which stacks them) skips it, and the fine-tune of
    the offline MobileNetV2 backbone finishes instead of failing after training."""
    from transformers import AutoModelForImageClassification, MobileNetV2Config, MobileNetV2ForImageClassification

    from covid_cxr.modeling.onnx_export import exportable

    assert exportable(AutoModelForImageClassification.from_pretrained(tiny_folder))
    cnn = MobileNetV2ForImageClassification(MobileNetV2Config(depth_multiplier=0.35, image_size=64, num_labels=2))
    assert not exportable(cnn)


def test_a_lungs_first_graph_is_the_whole_model(tmp_path: Path, fixture_root: Path) -> None:
    """A tiny random lungs-first model: the ONNX graph segments, focuses and classifies as PyTorch does, and the
    Space's pass reads the lungs and the focused film from it."""
    from covid_cxr.modeling.lungs_first import LungsFirstConfig, LungsFirstForImageClassification

    torch.manual_seed(0)
    finder = {"backbone": Dinov2Config(**TINY, image_size=56).to_dict(), "layers": [2, 4], "hidden": 8}
    config = LungsFirstConfig(
        **TINY,
        image_size=56,
        id2label={0: "non_covid", 1: "covid"},
        label2id={"non_covid": 0, "covid": 1},
        lung_finder=finder | {"threshold": 0.5, "image_size": 56},
    )
    LungsFirstForImageClassification(config).eval().save_pretrained(tmp_path)
    BitImageProcessor(size={"height": 56, "width": 56}, do_center_crop=False).save_pretrained(tmp_path)
    images = [Image.open(p) for p in sorted((fixture_root / "images").glob("*.jpg"))[:4]]
    assert export_onnx(tmp_path, images)["onnx_max_probability_difference"] < 1e-4
    graph = onnx.load(tmp_path / ONNX_DIR / ONNX_MODEL).graph  # position embeddings are constants, not resized
    assert not [node.name for node in graph.node if node.op_type == "Resize" and "embeddings" in node.name]
    fast, slow = Predictor(tmp_path), Predictor(tmp_path)
    slow.session = None
    assert fast.lungs_first and fast.session is not None
    pixels = fast.processor(images[0].convert("RGB"), return_tensors="pt")["pixel_values"]
    in_onnx, in_torch = fast.forward(pixels, heatmap=True), slow.forward(pixels, heatmap=True)
    np.testing.assert_allclose(in_onnx.logits, in_torch.logits, atol=1e-4)
    np.testing.assert_allclose(in_onnx.lung_probability, in_torch.lung_probability, atol=1e-4)
    np.testing.assert_allclose(in_onnx.focused.numpy(), in_torch.focused.numpy(), atol=1e-4)
