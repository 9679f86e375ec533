"""Load run against the Space on localhost: N concurrent gradio_client users x M requests each, every request
a different real test-split X-ray.

Reports answered/failed requests, latency percentiles, throughput and the server's resident memory before and
after (the server is started here, on the model of --model, and stopped at the end).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from gradio_client import Client, handle_file

from bench.common import machine, percentile, report
from covid_cxr.serving.launcher import running_app

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


def user(url: str, files: list[Path]) -> list[tuple[float, str]]:
    """(latency, outcome) per request: "scored", "refused" (the app's readable refusal) or "error: ..."."""
    client = Client(url, verbose=False)
    results = []
    for path in files:
        start = time.perf_counter()
        try:
            client.predict(handle_file(str(path)), api_name="/predict")
            outcome = "scored"
        except Exception as err:
            outcome = "refused" if "does not look like a frontal chest radiograph" in str(err) else f"error: {err}"
        results.append((time.perf_counter() - start, outcome))
    return results


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="covid-cxr-load-"))
    files = test_images(args.dataset, scratch)
    needed = args.users * args.requests
    batches = [[files[(u * args.requests + i) % len(files)] for i in range(args.requests)] for u in range(args.users)]
    log = scratch / "space.log"
    with running_app(REPO_ROOT / "space" / "app.py", {"MODEL": args.model}, REPO_ROOT, log) as (process, url):
        Client(url, verbose=False).predict(handle_file(str(files[-1])), api_name="/predict")  # warm-up
        before = rss_mb(process)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.users) as pool:
            runs = list(pool.map(lambda batch: user(url, batch), batches))
        wall = time.perf_counter() - start
        after = rss_mb(process)
    shutil.rmtree(scratch)
    outcomes = [outcome for run in runs for _, outcome in run]
    latencies = [t for run in runs for t, outcome in run if not outcome.startswith("error")]
    result = {
        **machine(),
        "users": args.users,
        "requests_per_user": args.requests,
        "distinct_images": min(needed, len(files)),
        "answered": len(latencies),
        "scored": outcomes.count("scored"),
        "refused_by_scope_guard": outcomes.count("refused"),
        "errors": sorted({o for o in outcomes if o.startswith("error")}),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "server_rss_before_mb": before,
        "server_rss_after_mb": after,
    }
    return report(result, args.output)


if __name__ == "__main__":
    main()
