"""From a fresh checkout to a trained model: `make data backbone lungs train` in a clone of this checkout's last
commit, each target timed on its own, with the peak memory of the largest process so far.

This is what a new user pays before the Space can start (`make train` builds the lung segmenter first when the
lung masks are there). The clone shares this checkout's virtualenv (installing is not timed) and reads the data
from ../shared; its own package copy is imported, so edits here during the run do not reach it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from covid_cxr.evaluation.keys import TRAIN_RUNTIME
from covid_cxr.model_folder import SEGMENTER_CV, TRAIN_RESULTS
from devtools.measuring import REPO_ROOT, machine, report

TARGETS = ("data", "backbone", "lungs", "train")


def clone(workdir: Path) -> Path:
    """A clone of this checkout's HEAD beside a link to ../shared, as CI lays it out."""
    checkout = workdir / "main"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(checkout)], check=True)
    (workdir / "shared").symlink_to(REPO_ROOT.parent / "shared")
    return checkout


def make(checkout: Path, target: str, venv: Path, log: Path) -> dict[str, object]:
    """Run one make target; its wall time and the largest process's peak RSS of all targets run so far."""
    environment = os.environ | {"PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    with log.open("a") as handle:
        subprocess.run(
            ["make", target, f"VENV={venv}"],
            cwd=checkout,
            env=environment,
            check=True,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"target": target, "wall_s": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak)}


def where_train_went(checkout: Path) -> dict[str, float]:
    """The fine-tune's own account: the Trainer loop's seconds (the rest is evaluation, calibration, the card's
    measurements and the ONNX export) and the lung segmenter's fitting and cross-validation."""
    trained = json.loads((checkout / "build" / "model" / TRAIN_RESULTS).read_text())
    lungs = json.loads((checkout / "build" / "lungs" / SEGMENTER_CV).read_text())
    return {"trainer_loop_s": round(trained[TRAIN_RUNTIME], 1), "lungs_fit_and_cv_s": lungs["seconds"]}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", default=str(REPO_ROOT / ".venv"), help="Virtualenv to run (default: %(default)s).")
    parser.add_argument("--workdir", default=None, help="Where to clone (default: a new temporary folder).")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fresh-build-"))
    checkout = clone(workdir)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    rows = [make(checkout, target, Path(args.venv), workdir / "make.log") for target in TARGETS]
    result = machine() | {"commit": commit.stdout.strip(), "checkout": str(checkout), "rows": rows}
    result |= {"total_s": round(sum(r["wall_s"] for r in rows), 1), **where_train_went(checkout)}
    return report(result, args.output)


if __name__ == "__main__":
    main()
