"""What the Space leaves on the server and in its log: a killed instance's uploads, refused calls, Gradio's lists
of cached files. Every request goes to the app's own 127.0.0.1 port, a bounded number of times."""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from gradio_client import Client, handle_file

from covid_cxr.serving.cleanup import claim_cache, sweep_abandoned
from devtools.launcher import running_app
from tests.conftest import REPO_ROOT
from tests.test_space import APP, app_env, xray  # noqa: F401 (a fixture)


def upload(url: str, name: str, content: bytes) -> Path:
    """Upload one file the way the page does, before any event uses it; where the server keeps it."""
    response = httpx.post(f"{url}gradio_api/upload", files={"files": (name, content)}, timeout=10)
    response.raise_for_status()
    return Path(response.json()[0])


def wait_for(condition, timeout: float) -> bool:
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.25)
    return condition()


def test_a_killed_instances_uploads_go_within_the_lifetime_and_a_live_ones_stay(tmp_path: Path) -> None:
    """SIGKILL leaves no time for cleaning up: the next instance must find the folder and sweep it by age, but never
    touch the recent files of an instance still running (with a longer lifetime) nor anything outside its root."""
    cache, lifetime = tmp_path / "gradio-cache", 1
    env = app_env(str(tmp_path / "no-model")) | {"GRADIO_TEMP_DIR": str(cache)}  # the cache works without a model
    bystander = cache / "another-app" / "keep.png"
    bystander.parent.mkdir(parents=True)
    bystander.write_bytes(b"not ours")
    with (
        running_app(APP, env | {"FILE_LIFETIME_S": "600"}, REPO_ROOT, tmp_path / "live.log") as (_, live_url),
        running_app(APP, env | {"FILE_LIFETIME_S": "600"}, REPO_ROOT, tmp_path / "killed.log") as (killed, url),
    ):
        kept = upload(live_url, "Doe_Jane_live.dcm", b"DICM patient Doe^Jane")
        dicom = upload(url, "Doe_Jane.dcm", b"DICM patient Doe^Jane")
        result = dicom.parent.parent / "covid-cxr-outputs" / "covid-cxr-heatmap-1.png"  # the instance's folder
        result.parent.mkdir()
        result.write_bytes(b"PNG")
        killed.kill()
        killed.wait(timeout=10)
        assert dicom.is_file() and result.is_file()  # what SIGKILL leaves behind
        time.sleep(lifetime + 0.5)
        with running_app(APP, env | {"FILE_LIFETIME_S": str(lifetime)}, REPO_ROOT, tmp_path / "next.log"):
            assert wait_for(lambda: not dicom.parent.parent.exists(), timeout=20 * lifetime), sorted(cache.rglob("*"))
            assert kept.is_file() and bystander.is_file()


def test_abandoned_folders_are_swept_and_nothing_else(tmp_path: Path) -> None:
    """Only unlocked folders in the root are swept: not a locked one (a running instance's, here this process's
    own second claim), not a link out of the root, not the root's parent."""
    own, live = claim_cache(tmp_path), claim_cache(tmp_path)
    dead, outside = own.parent / "4242-0-killed", tmp_path / "outside"
    for folder in (dead, outside):
        folder.mkdir()
    (own.parent / "link").symlink_to(outside, target_is_directory=True)
    files = [folder / "old.png" for folder in (live, dead, outside)] + [tmp_path / "old.png"]
    for path in files:
        path.write_bytes(b"x")
    time.sleep(1.2)
    assert sweep_abandoned(own, 1.0) == 1
    assert [path.exists() for path in files] == [True, False, True, True]
    time.sleep(1.2)  # empty for a lifetime: the folder goes too
    sweep_abandoned(own, 1.0)
    assert not dead.exists() and live.is_dir() and own.is_dir()


def refused_calls(url: str) -> dict[str, int]:
    """Calls the app refuses: unknown and private API names, a gallery index out of range, a hung-up upload.
    Returns each HTTP refusal's status; the gallery's refusal comes over the event stream."""
    statuses = {
        name: httpx.post(f"{url}gradio_api/call/{name}", json={"data": []}, timeout=10).status_code
        for name in ("no_such_endpoint", "predict_example")
    }
    session, config = "refusal-test", httpx.get(f"{url}config", timeout=10).json()
    gallery = next(i for i, d in enumerate(config["dependencies"]) if d["targets"][0][1] == "select")
    coverage = [90]  # the gallery's one input: the coverage slider's value
    event = {"data": coverage, "fn_index": gallery, "event_data": {"index": 99, "value": None}, "session_hash": session}
    statuses["gallery"] = httpx.post(f"{url}gradio_api/queue/join", json=event, timeout=10).status_code
    stream = httpx.get(f"{url}gradio_api/queue/data", params={"session_hash": session}, timeout=30).text
    completed = [json.loads(line[6:]) for line in stream.splitlines() if '"process_completed"' in line]
    assert completed and completed[0]["success"] is False, stream
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.putrequest("POST", "/gradio_api/upload")
    connection.putheader("Content-Type", "multipart/form-data; boundary=cut")
    connection.putheader("Content-Length", "100000")
    connection.endheaders()
    connection.send(b'--cut\r\nContent-Disposition: form-data; name="files"; filename="Doe_Jane.dcm"\r\n\r\nDICM')
    connection.close()  # hung up 99,950 bytes early
    return statuses


def test_refusals_log_one_line_and_gradios_file_lists_stay_bounded(
    trained: tuple[Path, dict],
    small_dataset: Path,
    tmp_path: Path,
    xray: Path,  # noqa: F811
) -> None:
    log, lifetime, requests = tmp_path / "space.log", 2, 12
    env = app_env(str(trained[0]), small_dataset) | {
        "GRADIO_TEMP_DIR": str(tmp_path / "cache"),
        "FILE_LIFETIME_S": str(lifetime),
    }
    with running_app(APP, env, REPO_ROOT, log) as (_, url):
        assert set(refused_calls(url).values()) <= {200, 404}
        assert wait_for(lambda: "the client disconnected" in log.read_text(), timeout=10)
        client = Client(url, verbose=False)
        for _ in range(requests):  # each: an upload and two result images for Gradio's lists
            client.predict(handle_file(str(xray)), api_name="/predict")
        time.sleep(3 * lifetime)  # every file of the last request swept (each half lifetime)
        listed = [int(n) for n in re.findall(r"Gradio still lists (\d+) cached file", log.read_text())]
    server_log = log.read_text()
    assert "Traceback" not in server_log and "Exception in ASGI application" not in server_log, server_log[-3000:]
    for refusal in ("no such API endpoint", "No such example.", "the client disconnected"):
        assert server_log.count(f"refused a request: {refusal}") == (2 if "endpoint" in refusal else 1), refusal
    assert "Doe" not in server_log
    assert listed[-1] < requests, listed  # not the 3 names a request adds: only the thumbnails stay listed
