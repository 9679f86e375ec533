"""Load run against the Space on localhost, in two rounds on one server:

* distinct: N concurrent gradio_client users x M requests each, every user sending different real test X-rays;
* identical: N users sending the same X-ray at the same moment (a barrier per round), R rounds, which once made
  Gradio rewrite one content-hashed output file while another request downloaded it.

Every answer's two result images are opened and verified, so a half-written download counts as an error.
Reports answered/failed requests, latency percentiles, throughput, the server's resident memory before and after
each round, and how many upload and result files the server still holds right after the run and once its file
lifetime has passed (the server is started here, on the model of --model, and stopped at the end).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from gradio_client import Client, handle_file
from PIL import Image

from devtools.launcher import running_app
from devtools.measuring import machine, percentile, report

REPO_ROOT = Path(__file__).resolve().parents[1]


def rss_mb(process: subprocess.Popen) -> float:
    return psutil.Process(process.pid).memory_info().rss / 2**20


def test_images(dataset_dir: str, folder: Path) -> list[Path]:
    """Every test-split X-ray as its own file, so each request uploads a different real image."""
    import datasets

    test = datasets.load_from_disk(dataset_dir)["test"].cast_column("image", datasets.Image(decode=False))
    paths = []
    for row in test:
        path = folder / Path(row["file_name"]).name
        path.write_bytes(row["image"]["bytes"])
        paths.append(path)
    return paths


def ask(client: Client, path: Path) -> tuple[float, str]:
    """(latency, outcome): "scored" (both result images complete), "refused" (the app's readable refusal)
    or "error: ..."."""
    start = time.perf_counter()
    try:
        _, _, seen, heatmap = client.predict(handle_file(str(path)), api_name="/predict")
        for image in (seen, heatmap):
            with Image.open(image) as opened:
                opened.load()  # a truncated download fails here
        outcome = "scored"
    except Exception as err:
        outcome = "refused" if "does not look like a frontal chest radiograph" in str(err) else f"error: {err}"
    return time.perf_counter() - start, outcome


def distinct_user(url: str, files: list[Path]) -> list[tuple[float, str]]:
    client = Client(url, verbose=False)
    return [ask(client, path) for path in files]


def identical_user(url: str, path: Path, rounds: int, barrier: threading.Barrier) -> list[tuple[float, str]]:
    client = Client(url, verbose=False)
    results = []
    for _ in range(rounds):
        barrier.wait()  # every user sends the same file at the same moment
        results.append(ask(client, path))
    return results


def summary(runs: list[list[tuple[float, str]]], wall: float, before: float, after: float) -> dict:
    outcomes = [outcome for run in runs for _, outcome in run]
    latencies = [t for run in runs for t, outcome in run if not outcome.startswith("error")]
    return {
        "requests": len(outcomes),
        "answered": len(latencies),
        "scored": outcomes.count("scored"),
        "refused_by_scope_guard": outcomes.count("refused"),
        "errors": len(outcomes) - len(latencies),
        "error_kinds": sorted({o for o in outcomes if o.startswith("error")}),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "server_rss_before_mb": before,
        "server_rss_after_mb": after,
    }


def timed_round(process: subprocess.Popen, users: int, work) -> dict:
    before, start = rss_mb(process), time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        runs = list(pool.map(work, range(users)))
    return summary(runs, time.perf_counter() - start, before, rss_mb(process))


def files_in(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="Distinct X-rays per user in the first round.")
    parser.add_argument("--rounds", type=int, default=10, help="Rounds of the identical-file round.")
    parser.add_argument("--file_lifetime_s", type=int, default=30, help="The server's FILE_LIFETIME_S.")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="covid-cxr-load-"))
    files = test_images(args.dataset, scratch)
    batches = [[files[(u * args.requests + i) % len(files)] for i in range(args.requests)] for u in range(args.users)]
    cache = scratch / "gradio-cache"
    env = {"MODEL": args.model, "GRADIO_TEMP_DIR": str(cache), "FILE_LIFETIME_S": str(args.file_lifetime_s)}
    with running_app(REPO_ROOT / "space" / "app.py", env, REPO_ROOT, scratch / "space.log") as (process, url):
        Client(url, verbose=False).predict(handle_file(str(files[-1])), api_name="/predict")  # warm-up
        distinct = timed_round(process, args.users, lambda u: distinct_user(url, batches[u]))
        barrier = threading.Barrier(args.users)
        identical = timed_round(process, args.users, lambda u: identical_user(url, files[0], args.rounds, barrier))
        files_at_end = files_in(cache)
        time.sleep(2 * args.file_lifetime_s)
        files_after_lifetime = files_in(cache)
        log = (scratch / "space.log").read_text()
    shutil.rmtree(scratch)
    result = {
        **machine(),
        "users": args.users,
        "requests_per_user": args.requests,
        "distinct_images": len({path for batch in batches for path in batch}),
        "rounds": args.rounds,
        "distinct": distinct,
        "identical": identical,
        "file_lifetime_s": args.file_lifetime_s,
        "server_files_at_end": files_at_end,
        "server_files_after_lifetime": files_after_lifetime,
        "tracebacks_in_server_log": log.count("Traceback"),
    }
    return report(result, args.output)


if __name__ == "__main__":
    main()
