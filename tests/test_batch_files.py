"""The lung-mask command on a folder of real X-rays with bad files among them: each bad file is skipped with its
reason, the rest get masks, and the summary always comes. A stand-in segmenter keeps this in the fast tier."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxr.cli import lungs as lungs_cli
from covid_cxr.lungs.segmenter import LungSegmenter
from tests.test_imaging import metadata_bomb


class HalfSegmenter:
    """Stands in for LungSegmenter: the left half of every image is lung, and an image of the size `fails_on`
    trips a fault, as a bug in the model code would."""

    def __init__(self, fails_on: tuple[int, int]) -> None:
        self.fails_on = fails_on

    def masks(self, images: list[Image.Image]) -> list[np.ndarray]:
        masks = []
        for image in images:
            if image.size == self.fails_on:
                raise RuntimeError("a fault in the segmenter")
            mask = np.zeros((image.height, image.width), dtype=bool)
            mask[:, : image.width // 2] = True
            masks.append(mask)
        return masks


@pytest.fixture
def batch(fixture_root: Path, tmp_path: Path) -> Path:
    """12 real JPEGs, a PNG metadata bomb among them, a broken x.dcm before a readable x.jpg, and y.jpg + y.png."""
    images = sorted((fixture_root / "images").iterdir())
    folder = tmp_path / "inputs"
    folder.mkdir()
    for image in images[:12]:
        shutil.copy(image, folder)
    (folder / "d_bomb.png").write_bytes(metadata_bomb(np.asarray(Image.open(images[12]).convert("L"))))
    (folder / "x.dcm").write_bytes(bytes(128) + b"DICM" + bytes(16))
    shutil.copy(images[12], folder / "x.jpg")
    shutil.copy(images[13], folder / "y.jpg")
    Image.open(images[14]).save(folder / "y.png")
    return folder


def test_every_file_gets_a_mask_or_a_reason(batch: Path, tmp_path: Path, monkeypatch, capsys, caplog) -> None:
    faulty = batch / "f_fault.jpg"  # an image of a size no other has, for the stand-in to trip on
    Image.open(batch / "x.jpg").resize((257, 263)).save(faulty)
    segmenter = HalfSegmenter(fails_on=(257, 263))
    monkeypatch.setattr(LungSegmenter, "from_pretrained", lambda path: segmenter)
    with caplog.at_level(logging.ERROR):
        status = lungs_cli.main(
            ["--model", "unused", "--input_dir", str(batch), "--output_dir", str(tmp_path / "masks")]
        )
    out = capsys.readouterr().out
    assert status == 0
    masks = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert masks == sorted(f"{p.stem}.png" for p in batch.glob("*.jpg") if p != faulty)  # x.jpg and y.jpg too
    assert Image.open(tmp_path / "masks" / "x.png").size == Image.open(batch / "x.jpg").size
    assert "skipped d_bomb.png: the PNG holds metadata" in out
    assert "skipped x.dcm: " in out and "skipped x.jpg" not in out
    assert "skipped y.png: another file is also named y.*" in out
    assert f"skipped {faulty.name}: unexpected error" in out and "please report it" in out
    assert any(record.exc_info for record in caplog.records)  # the fault's traceback is logged
    assert f"Wrote {len(masks)} mask(s) to {tmp_path / 'masks'}/; skipped 4." in out


@pytest.mark.parametrize("output", [".", "masks", ".."])
def test_output_overlapping_the_input_is_refused_before_any_work(batch: Path, monkeypatch, output) -> None:
    def no_model(path):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(LungSegmenter, "from_pretrained", no_model)
    with pytest.raises(SystemExit) as exited:
        lungs_cli.main(["--model", "unused", "--input_dir", str(batch), "--output_dir", str(batch / output)])
    assert "the input folder --input_dir" in str(exited.value.code)  # the message, exit status 1
    assert not (batch / "masks").exists()
