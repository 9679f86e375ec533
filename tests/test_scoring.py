"""`covid-cxr predict` at scale, on real X-rays with broken and out-of-scope files among them: two processes under
`accelerate launch` (gloo, CPU) write the file one process writes; a run killed midway (SIGKILL) resumes to the
same file without scoring a film twice; a `datasets` dataset (a folder, or a Hub id through a recorded fake) and
Parquet output give the same rows."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from covid_cxr.cli.predict import main as predict
from covid_cxr.scoring.store import SETTINGS, read_shard, work_folder
from tests.conftest import FIXTURE_ROOT, LAUNCH, LAUNCH_ENV


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 15 real fixture X-rays, each twice (a copy in a sub-folder), a truncated PNG, a text file named .jpg and
    a colour photograph-like image: 33 files, 3 of them not to be scored."""
    folder = tmp_path_factory.mktemp("films")
    (folder / "more").mkdir()
    for path in sorted((FIXTURE_ROOT / "images").iterdir()):
        Image.open(path).convert("L").save(folder / f"{path.stem}.png")
        Image.open(path).convert("L").save(folder / "more" / f"{path.stem}.png")
    first = sorted(folder.glob("*.png"))[0]
    (folder / "broken.png").write_bytes(first.read_bytes()[:3000])
    (folder / "notes.jpg").write_text("not an image")
    colours = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(colours).save(folder / "colour.png")
    return folder


def rows_of(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_two_processes_write_what_one_writes(trained, films: Path, tmp_path: Path) -> None:
    model, _ = trained
    one = tmp_path / "one.csv"
    predict(["--model", str(model), "--inputs", str(films), "--recursive", "--batch_size", "4", "--output", str(one)])
    two = tmp_path / "two.csv"
    command = [*LAUNCH, "-m", "covid_cxr.cli.predict", "--model", str(model), "--inputs", str(films), "--recursive",
               "--batch_size", "4", "--output", str(two)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=LAUNCH_ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout and done.stdout.count("Scored ") == 1  # the main process reports
    assert two.read_text() == one.read_text()
    rows = rows_of(one)
    assert len(rows) == 33 and [Path(row["file"]).name for row in rows[:2]] == ["broken.png", "colour.png"]
    status = {Path(row["file"]).name: row["status"] for row in rows}
    assert status["broken.png"] == status["notes.jpg"] == "unreadable"
    assert status["colour.png"] == "out of scope"
    assert sum(s == "ok" for s in status.values()) > 0
    assert not work_folder(two).exists()


def test_a_killed_run_resumes_to_the_same_file_scoring_nothing_twice(trained, films: Path, tmp_path: Path) -> None:
    model, _ = trained
    many = tmp_path / "many"
    many.mkdir()
    for copy in range(8):  # 264 files, 132 batches of two: the kill lands midway
        for path in films.rglob("*.*"):
            (many / f"{copy}-{path.parent.name}-{path.name}").symlink_to(path)
    arguments = ["--model", str(model), "--inputs", str(many), "--batch_size", "2"]
    whole = tmp_path / "whole.csv"
    predict([*arguments, "--output", str(whole)])
    output = tmp_path / "resumed.csv"
    command = [sys.executable, "-m", "covid_cxr.cli.predict", *arguments, "--output", str(output)]
    running = subprocess.Popen(command, env=LAUNCH_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = work_folder(output)
    deadline = time.monotonic() + 300
    while not any(len(list(read_shard(p))) >= 3 for p in shards.glob("rank*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    running.send_signal(signal.SIGKILL)
    running.wait()
    done_before = sum(len(batch["rows"]) for p in shards.glob("rank*.jsonl") for _, batch in read_shard(p))
    assert 0 < done_before < 264 and not output.exists()
    with pytest.raises(SystemExit, match="--resume"):  # the kept rows are never dropped silently
        predict([*arguments, "--output", str(output)])
    with pytest.raises(SystemExit, match="batch_size was 2, now 4"):
        predict([*arguments[:-1], "4", "--output", str(output), "--resume"])
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=LAUNCH_ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"; {264 - done_before} in this run" in done.stdout  # the films scored before were not scored again
    assert output.read_text() == whole.read_text() and not shards.exists()


def test_a_dataset_is_scored_with_its_id_columns_and_parquet_holds_the_csv_rows(
    trained, small_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    model, _ = trained
    split = datasets.load_from_disk(str(small_dataset))["test"]
    csv_out, parquet_out = tmp_path / "scores.csv", tmp_path / "scores.parquet"
    predict(["--model", str(model), "--dataset", str(small_dataset), "--output", str(csv_out)])
    rows = rows_of(csv_out)
    assert list(rows[0]) == ["row", "file_name", *[c for c in rows[0] if c not in ("row", "file_name")]]
    assert [row["file_name"] for row in rows] == split["file_name"] and "patient_id" not in rows[0]
    asked = []

    def hub(name, split, streaming):  # the Hub, recorded: what would be downloaded
        asked.append((name, split, streaming))
        return datasets.load_from_disk(str(small_dataset))[split]

    monkeypatch.setattr(datasets, "load_dataset", hub)
    predict(["--model", str(model), "--dataset", "org/archive", "--output", str(parquet_out)])
    assert asked == [("org/archive", "test", False)]
    table = pq.read_table(parquet_out).to_pylist()
    assert [{k: "" if v is None else str(v) for k, v in row.items()} for row in table] == rows
    monkeypatch.undo()
    with pytest.raises(SystemExit, match=r"org/archive could not be loaded from the Hub: .*Offline"):  # one line
        predict(["--model", str(model), "--dataset", "org/archive", "--output", str(tmp_path / "h.csv")])
    with pytest.raises(SystemExit, match="patient tags are never written"):
        predict(["--model", str(model), "--dataset", str(small_dataset), "--id_columns", "patient_id",
                 "--output", str(tmp_path / "p.csv")])  # fmt: skip


def test_the_settings_of_a_run_are_kept_beside_its_output_until_it_is_complete(tmp_path: Path) -> None:
    from covid_cxr.scoring.store import RunError, Shards

    shards = Shards(tmp_path / "out.csv")
    settings = {"model": "m", "batch_size": 16}
    assert shards.check(settings, resume=True, overwrite=False) is False  # nothing to go on from: start afresh
    shards.start(settings, resume=False)
    assert json.loads((shards.folder / SETTINGS).read_text()) == settings
    writer = shards.writer(0)
    writer.write(0, "a", [{"status": "ok"}])
    writer.write(1, "b", [{"status": "ok"}, {"status": "unreadable"}])
    writer.close()
    with writer.path.open("a") as handle:
        handle.write('{"batch": 2, "films": "c", "rows": [{"sta')  # a kill mid-write
    assert shards.done() == {0: "a", 1: "b"} and len(list(shards.merged())) == 3
    with pytest.raises(RunError, match="model was 'm', now 'n'"):
        shards.check(settings | {"model": "n"}, resume=True, overwrite=False)
    assert shards.check(settings, resume=True, overwrite=False) is True


def test_a_folder_streams_in_the_sorted_order_of_its_paths(tmp_path: Path) -> None:
    from covid_cxr.data.imaging import SUPPORTED_SUFFIXES, walk_images

    for name in ("b.png", "a-c.JPG", "a/x.dcm", "a/b/y.png", "a.png/z.jpeg", "c.txt", "a/d.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "a")  # a link to a folder is not walked (no loops)
    expected = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    assert list(walk_images(tmp_path, recursive=True)) == expected and len(expected) == 6
    assert list(walk_images(tmp_path)) == [tmp_path / "a-c.JPG", tmp_path / "b.png"]
