"""Soak run: the Space on localhost answers thousands of distinct real X-rays from a few clients while its resident
memory (RSS) is sampled along the way, to tell a leak (RSS climbing with the requests) from the allocator
(RSS rising early, then flat once glibc's per-thread arenas have grown).

A first, shorter run gives the server glibc's default arenas (MALLOC_ARENA_MAX=0: 8 per core), the second the
Space's own bound (serving.app), to compare. Every answer's two result images are opened, as in bench/load_space.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from gradio_client import Client

from bench.load_space import REPO_ROOT, ask
from devtools.launcher import running_app
from devtools.measuring import machine, report

SAMPLE_EVERY = 250  # requests between two RSS samples


def all_images(dataset_dir: str, folder: Path) -> list[Path]:
    """Every image of every split as its own file: the distinct real X-rays the clients send."""
    import datasets

    paths = []
    for split in datasets.load_from_disk(dataset_dir).values():
        for row in split.cast_column("image", datasets.Image(decode=False)):
            path = folder / Path(row["file_name"]).name
            path.write_bytes(row["image"]["bytes"])
            paths.append(path)
    return paths


class Sampler:
    """RSS of the server after every SAMPLE_EVERY answered requests, from any client thread."""

    def __init__(self, pid: int) -> None:
        self.process, self.lock, self.done, self.curve = psutil.Process(pid), threading.Lock(), 0, []
        self.started = time.perf_counter()
        self.sample()

    def sample(self) -> None:
        rss = self.process.memory_info().rss / 2**20
        self.curve.append({"requests": self.done, "rss_mb": rss, "elapsed_s": time.perf_counter() - self.started})

    def answered(self) -> None:
        with self.lock:
            self.done += 1
            if self.done % SAMPLE_EVERY == 0:
                self.sample()


def client_run(url: str, files: list[Path], sampler: Sampler) -> list[str]:
    client, outcomes = Client(url, verbose=False), []
    for path in files:
        outcomes.append(ask(client, path)[1])
        sampler.answered()
    return outcomes


def growth_per_1000(curve: list[dict], start_share: float = 0.5) -> float:
    """RSS growth (MB per 1,000 requests) over the last half of the run: a leak keeps it above zero."""
    tail = [point for point in curve if point["requests"] >= start_share * curve[-1]["requests"]]
    first, last = tail[0], tail[-1]
    return 1000 * (last["rss_mb"] - first["rss_mb"]) / max(1, last["requests"] - first["requests"])


def soak(model: str, files: list[Path], requests: int, clients: int, arena_max: int | None, scratch: Path) -> dict:
    """One server, `requests` answers from `clients` clients, its RSS curve."""
    order = [files[i % len(files)] for i in range(requests)]
    env = {"MODEL": model, "GRADIO_TEMP_DIR": str(scratch / "cache"), "FILE_LIFETIME_S": "30"}
    if arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(arena_max)  # read by glibc at start and by the Space (serving.app)
    with running_app(REPO_ROOT / "space" / "app.py", env, REPO_ROOT, scratch / "space.log") as (process, url):
        sampler = Sampler(process.pid)
        with ThreadPoolExecutor(clients) as pool:
            runs = list(pool.map(lambda c: client_run(url, order[c::clients], sampler), range(clients)))
        sampler.sample()
        log = (scratch / "space.log").read_text()
    outcomes = [outcome for run in runs for outcome in run]
    return {
        "clients": clients,
        "requests": len(outcomes),
        "distinct_images": len(set(order)),
        "arena_max": arena_max,
        "scored": outcomes.count("scored"),
        "refused_by_scope_guard": outcomes.count("refused"),
        "errors": sum(outcome.startswith("error") for outcome in outcomes),
        "curve": sampler.curve,
        "rss_growth_mb_per_1000_last_half": growth_per_1000(sampler.curve),
        "tracebacks_in_server_log": log.count("Traceback"),
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--baseline_requests", type=int, default=2000, help="First, glibc's default arenas (0: skip).")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="covid-cxr-soak-"))
    files = all_images(args.dataset, scratch)
    baseline = (
        soak(args.model, files, args.baseline_requests, args.clients, 0, scratch) if args.baseline_requests else None
    )
    result = {**machine(), "model": args.model}
    result |= soak(args.model, files, args.requests, args.clients, None, scratch) | {"baseline": baseline}
    shutil.rmtree(scratch)
    return report(result, args.output)


if __name__ == "__main__":
    main()
