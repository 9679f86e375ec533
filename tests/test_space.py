"""The Gradio Space, launched for real on localhost and queried with gradio_client (and a browser, below)."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import datasets
import gradio as gr
import numpy as np
import pydicom
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from transformers import pipeline

from covid_cxr.evaluation.keys import TEST_N, TEST_SENSITIVITY, TEST_SPECIFICITY
from covid_cxr.modeling.conformal import Conformal
from covid_cxr.serving.bundle import assemble
from covid_cxr.serving.cleanup import sweep
from covid_cxr.serving.examples import example_files
from covid_cxr.serving.predictor import Predictor
from covid_cxr.serving.ui import make_handlers
from covid_cxr.serving.wording import SET_WORDS
from devtools.launcher import open_page, running_app
from tests.conftest import REPO_ROOT, write_dicom

APP = REPO_ROOT / "space" / "app.py"


def app_env(model: str | None, dataset: Path | None = None) -> dict[str, str]:
    env = {"MODEL": model} if model is not None else {}
    return env | ({"DATASET": str(dataset)} if dataset is not None else {})


@pytest.fixture(scope="module")
def server(trained: tuple[Path, dict], small_dataset: Path, lungs_folder: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("logs") / "space.log"
    env = app_env(str(trained[0]), small_dataset) | {"LUNGS": str(lungs_folder)}
    with running_app(APP, env, REPO_ROOT, log) as (_, url):
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def xray(small_dataset: Path, tmp_path_factory) -> Path:
    """A real validation-split X-ray (in the scope guard's reference set), stretched to the full 0-255 range so
    that DICOM versions of it decode to the very same pixels."""
    raw = datasets.load_from_disk(str(small_dataset))["validation"][0]["image"].convert("L")
    pixels = np.asarray(raw, dtype=np.float64)
    stretched = np.round((pixels - pixels.min()) * 255 / (pixels.max() - pixels.min())).astype(np.uint8)
    path = tmp_path_factory.mktemp("inputs") / "xray.png"
    Image.fromarray(stretched).save(path)
    return path


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def scores(result) -> dict[str, float]:
    return {entry["label"]: entry["confidence"] for entry in result[0]["confidences"]}


def test_real_xray_gets_probabilities_and_a_decision(client: Client, xray: Path) -> None:
    result = client.predict(handle_file(str(xray)), api_name="/predict")
    probabilities = scores(result)
    assert set(probabilities) == {"covid", "non_covid"}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert "threshold" in result[1] and "COVID-19 pattern" in result[1]
    assert Image.open(result[2]).size == Image.open(result[3]).size
    share = re.search(r"(\d+)% of the model's attention is on the lungs \(outlined in green\)", result[1])
    assert share and 0 <= int(share[1]) <= 100
    seen = np.asarray(Image.open(result[2]).convert("RGB")).reshape(-1, 3)
    assert ((seen == (0, 255, 0)).all(axis=1)).any()  # the lung outline is drawn on the image the model saw


def test_decision_follows_the_stored_threshold(client: Client, server: str, xray: Path, trained) -> None:
    result = client.predict(handle_file(str(xray)), api_name="/predict")
    threshold = json.loads((trained[0] / "config.json").read_text())["decision_threshold"]
    covid = scores(result)["covid"]
    expected = "## COVID-19 pattern\n" if covid >= threshold else "## No COVID-19 pattern\n"
    assert expected in result[1] and f"threshold of {threshold:.2f}" in result[1]
    assert result[0]["label"] == ("covid" if covid >= threshold else "non_covid")  # headed by the decision
    config = json.loads(fetch(server + "config"))
    labels = [c["props"] for c in config["components"] if c.get("type") == "label"]
    assert labels and all(props["show_heading"] is False for props in labels)  # no class name above the decision
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/predict"]
    names = [r["label"] for r in api["returns"]]
    assert len(names) == 4 and not any(name.startswith("value_") for name in names), names


def test_examples_show_every_source_and_label_of_the_test_split(server: str, small_dataset: Path) -> None:
    config = json.loads(fetch(server + "config"))
    galleries = [c["props"] for c in config["components"] if c.get("type") == "gallery"]
    assert len(galleries) == 1 and galleries[0]["visible"] is True
    captions = [item["caption"] for item in galleries[0]["value"]]  # the test-split examples, shown as images
    test = datasets.load_from_disk(str(small_dataset))["test"]
    plain = {"covid": "COVID-19", "non_covid": "not COVID-19"}
    groups = {
        f"{plain[test.features['label'].names[label]]} · {source}"
        for source, label in zip(test["source"], test["label"], strict=True)
    }
    assert sorted(captions) == sorted(groups)


def test_api_matches_pipeline(client: Client, xray: Path, trained: tuple[Path, dict]) -> None:
    api = scores(client.predict(handle_file(str(xray)), api_name="/predict"))
    hub = {r["label"]: r["score"] for r in pipeline("image-classification", model=str(trained[0]))(str(xray))}
    assert api == pytest.approx(hub, abs=1e-4)


def test_the_space_quotes_the_figures_of_its_run(trained: tuple[Path, dict]) -> None:
    facts = Predictor(trained[0]).facts()  # all_results.json as a real run wrote it
    for key in (TEST_SENSITIVITY, TEST_SPECIFICITY, TEST_N):
        assert facts[key] == trained[1][key] and facts[key] is not None


def test_a_chosen_coverage_redraws_the_answer_with_its_own_set_and_band(
    trained: tuple[Path, dict], xray: Path, tmp_path: Path
) -> None:
    """The page's coverage slider: the shown answer is drawn again at the chosen coverage, its prediction set and
    uncertain band those of that coverage, as analysing the film at it gives them, without analysing it again.
    Validation scores of 200 films a class, drawn around the film's own score, make each coverage's band differ."""
    predictor = Predictor(trained[0])
    page, redraw, _ = make_handlers(predictor, tmp_path)
    shown = page(str(xray))[4]
    covid, rng = shown.result.covid_probability, np.random.default_rng(0)
    scores_ = np.clip(np.r_[rng.normal(covid + 0.1, 0.2, 200), rng.normal(covid - 0.1, 0.2, 200)], 0, 1)
    predictor.conformal = Conformal.fit(scores_, np.r_[[1] * 200, [0] * 200])
    bands = set()
    for percent in (80, 90, 99):
        verdict, bar = redraw(shown, percent)
        fresh = page(str(xray), percent)
        assert bar == fresh[1] and verdict.split("Answered in")[0] == fresh[0].split("Answered in")[0]
        expected = predictor.conformal.sets([covid], percent / 100)[0]
        assert SET_WORDS[expected].format(coverage=f"{percent}%") in verdict
        low, high = predictor.band(percent / 100)
        assert f"({low:.2f} to {high:.2f}) is where both answers remain possible at {percent}%" in bar
        bands.add((low, high))
    assert len(bands) == 3
    assert redraw(None, 80) == (gr.skip(), gr.skip())  # nothing shown yet: nothing redrawn


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_gives_the_png_prediction(client: Client, xray: Path, tmp_path: Path, photometric: str) -> None:
    twelve_bit = np.asarray(Image.open(xray), dtype=np.uint16) * 16
    stored = twelve_bit if photometric == "MONOCHROME2" else 4095 - twelve_bit
    dicom = write_dicom(tmp_path / "xray.dcm", stored, photometric)
    from_dicom = scores(client.predict(handle_file(str(dicom)), api_name="/predict"))
    from_png = scores(client.predict(handle_file(str(xray)), api_name="/predict"))
    assert from_dicom == pytest.approx(from_png, abs=1e-3)


def bad_inputs(tmp_path: Path, xray: Path) -> dict[str, tuple[Path, str]]:
    data = xray.read_bytes()
    cases = {
        "empty.png": (b"", "empty file"),
        "notes.png": (b"patient notes, not an image", "not a PNG, JPEG or DICOM"),
        "truncated.png": (data[: len(data) // 4], "truncated or corrupt"),
    }
    paths = {}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        paths[name] = (tmp_path / name, message)
    ct = write_dicom(tmp_path / "ct.dcm", np.asarray(Image.open(xray), dtype=np.uint16), modality="CT")
    paths["ct.dcm"] = (ct, "not a radiograph")
    dicom = write_dicom(tmp_path / "ok.dcm", np.asarray(Image.open(xray), dtype=np.uint16)).read_bytes()
    rows = dicom.index(b"\x28\x00\x10\x00US\x02\x00")  # Rows, a 2-byte US: declared 3 bytes long instead
    (tmp_path / "corrupt.dcm").write_bytes(
        dicom[:rows] + b"\x28\x00\x10\x00US\x03\x00" + dicom[rows + 8 : rows + 10] + b"\0" + dicom[rows + 10 :]
    )
    paths["corrupt.dcm"] = (tmp_path / "corrupt.dcm", "length does not match its value type")
    from skimage import data as samples

    Image.fromarray(samples.astronaut()).save(tmp_path / "photo.png")
    paths["photo.png"] = (tmp_path / "photo.png", "colour image")
    Image.fromarray(samples.camera()).save(tmp_path / "grey_photo.png")
    # refused by the lungs a lungs-first model finds, or by the scope guard's features: both say why in words
    paths["grey_photo.png"] = (tmp_path / "grey_photo.png", "no plausible lung fields|image features are unlike those")
    Image.new("L", (400, 400), 128).save(tmp_path / "blank.png")
    paths["blank.png"] = (tmp_path / "blank.png", "blank or nearly uniform")
    buffer = io.BytesIO()
    Image.open(xray).resize((600, 120)).save(buffer, format="PNG")
    (tmp_path / "strip.png").write_bytes(buffer.getvalue())
    paths["strip.png"] = (tmp_path / "strip.png", "aspect ratio")
    return paths


def test_bad_inputs_get_readable_errors_and_the_app_keeps_serving(client: Client, xray: Path, tmp_path: Path) -> None:
    for name, (path, message) in bad_inputs(tmp_path, xray).items():
        with pytest.raises(Exception, match=message) as caught:
            client.predict(handle_file(str(path)), api_name="/predict")
        assert "Traceback" not in str(caught.value), name
    assert sum(scores(client.predict(handle_file(str(xray)), api_name="/predict")).values()) == pytest.approx(1)


def test_upload_size_is_bounded(server: str) -> None:
    config = json.loads(fetch(server + "config"))
    assert config["max_file_size"] == 20 * 1024 * 1024


def test_missing_model_says_which_command_makes_one(tmp_path: Path) -> None:
    with running_app(APP, app_env(str(tmp_path / "no-model-here")), REPO_ROOT, tmp_path / "log") as (_, url):
        config = fetch(url + "config")
        assert "No trained model found" in config and "make train" in config
        assert "covid-cxr finetune --dataset" in config  # the command the wheel has, not only the checkout's


def test_assembled_space_runs_on_its_own(
    trained: tuple[Path, dict], small_dataset: Path, tmp_path: Path, xray: Path
) -> None:
    folder = assemble(REPO_ROOT / "space", tmp_path / "space", str(trained[0]), small_dataset)
    assert {"app.py", "requirements.txt", "README.md", "covid_cxr", "model", "examples"} <= {
        p.name for p in folder.iterdir()
    }
    card = (folder / "README.md").read_text()
    assert "sdk: gradio" in card and "license_link: model/LICENSE.md" in card and "## Example images" in card
    for example in example_files(folder / "examples"):
        assert f"| {example.name} |" in card  # every example image is attributed
    # no MODEL: the app must find the model shipped with it
    with running_app(folder / "app.py", app_env(None), folder, tmp_path / "log") as (_, url):
        result = Client(url, verbose=False).predict(handle_file(str(xray)), api_name="/predict")
        assert sum(scores(result).values()) == pytest.approx(1.0, abs=1e-6)


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "build" / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is required in CI: apt-get install chromium (.ci/run does)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def test_browser_answer_refusal_and_example(browser, server: str, xray: Path, client: Client, tmp_path: Path) -> None:
    """As a user: an upload answered with the score on its bar, and drawn again at a coverage chosen on the slider;
    a photograph refused with the reason kept in the decision panel (not a vanishing toast, no error badges); an
    example answered beside its recorded label."""
    expected = scores(client.predict(handle_file(str(xray)), api_name="/predict"))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(page, server)
    decision = page.locator("#decision")
    page.locator("input[type=file]").first.set_input_files(str(xray))
    page.get_by_role("button", name="Analyse").click()
    decision.get_by_text("Answered in").wait_for(timeout=60_000)
    assert f"COVID-19 score {expected['covid']:.2f}" in decision.inner_text()
    assert "threshold" in page.locator("#score").inner_text()
    assert "at 90%" in decision.inner_text()
    page.locator("#coverage input[type=number]").fill("99")
    page.locator("#coverage input[type=number]").press("Enter")
    decision.get_by_text("at 99%").wait_for(timeout=10_000)  # the answer drawn again at the chosen coverage
    assert "Answered in" in decision.inner_text() and "99%" in page.locator("#score").inner_text()
    from skimage import data as samples

    Image.fromarray(samples.astronaut()).save(tmp_path / "photo.png")
    open_page(page, server)  # a fresh page: its upload box is empty again
    page.locator("input[type=file]").first.set_input_files(str(tmp_path / "photo.png"))
    page.get_by_role("button", name="Analyse").click()
    decision.get_by_text("Not analysed").wait_for(timeout=60_000)
    page.wait_for_timeout(6000)  # longer than a toast stays
    assert "colour image" in decision.inner_text()
    assert page.get_by_text("Error", exact=True).count() == 0
    page.locator("#examples .thumbnail-item").first.click()
    decision.get_by_text("Recorded label of this example").wait_for(timeout=60_000)
    assert "Answered in" in decision.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "space_browser.png"), full_page=True)
    page.close()


def test_identical_file_from_many_clients_at_once(server: str, xray: Path) -> None:
    """Identical uploads at the same moment once shared one output file that Gradio rewrote while another client
    downloaded it; now every answer has its own, complete, result images."""
    users, rounds = 8, 3
    barrier, failures = threading.Barrier(users), []

    def user() -> None:
        client = Client(server, verbose=False)
        for _ in range(rounds):
            barrier.wait()
            try:
                _, _, seen, heatmap = client.predict(handle_file(str(xray)), api_name="/predict")
                for path in (seen, heatmap):
                    Image.open(path).load()
            except Exception as err:  # every failure is collected, so one cannot hide another
                failures.append(repr(err))

    threads = [threading.Thread(target=user) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_uploads_are_deleted_patient_tags_never_shown_and_refusals_log_one_line(
    trained: tuple[Path, dict], small_dataset: Path, tmp_path: Path, xray: Path
) -> None:
    cache, log, lifetime = tmp_path / "gradio-cache", tmp_path / "space.log", 2
    tagged = write_dicom(tmp_path / "tagged.dcm", np.asarray(Image.open(xray), dtype=np.uint16) * 16)
    ct = write_dicom(tmp_path / "ct.dcm", np.asarray(Image.open(xray), dtype=np.uint16), modality="CT")
    for path in (tagged, ct):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-4711", "19500101"
        ds.save_as(path)
    env = app_env(str(trained[0]), small_dataset) | {"GRADIO_TEMP_DIR": str(cache), "FILE_LIFETIME_S": str(lifetime)}
    with running_app(APP, env, REPO_ROOT, log) as (_, url):
        client = Client(url, verbose=False)
        examples = set(cache.rglob("*.jpg"))  # the gallery's thumbnails, kept for as long as the app runs
        shown = [json.dumps(client.predict(handle_file(str(path)), api_name="/predict")) for path in (xray, tagged)]
        with pytest.raises(Exception, match="not a radiograph") as refused:
            client.predict(handle_file(str(ct)), api_name="/predict")
        shown.append(str(refused.value))
        assert {p.name for p in cache.rglob("*") if p.is_file()} >= {"xray.png", "tagged.dcm", "ct.dcm"}
        deadline = time.time() + 20 * lifetime
        while {p for p in cache.rglob("*") if p.is_file()} != examples and time.time() < deadline:
            time.sleep(0.5)
        assert {p for p in cache.rglob("*") if p.is_file()} == examples  # uploads and results gone
        for example in examples:  # and the thumbnails still served
            assert urllib.request.urlopen(f"{url}gradio_api/file={example}", timeout=10).status == 200
    server_log = log.read_text()
    for secret in ("Doe", "Jane", "MRN-4711", "19500101"):
        assert not any(secret in text for text in shown) and secret not in server_log
    assert server_log.count("refused a request: Could not read this file: DICOM modality 'CT'") == 1
    assert "Traceback" not in server_log


def test_sweep_deletes_old_files_and_keeps_the_rest(tmp_path: Path) -> None:
    kept, old, new = tmp_path / "example" / "thumb.jpg", tmp_path / "upload" / "xray.dcm", tmp_path / "result.png"
    for path in (kept, old):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    time.sleep(1.2)
    new.write_bytes(b"x")
    assert sweep(tmp_path, 1.0, keep=frozenset({kept})) == 1
    assert kept.is_file() and new.is_file() and not old.exists()
    time.sleep(1.2)  # a folder goes once it has been empty for a lifetime: an upload may be about to land in it
    assert sweep(tmp_path, 1.0, keep=frozenset({kept})) == 1
    assert kept.is_file() and not new.exists() and not old.parent.exists()
