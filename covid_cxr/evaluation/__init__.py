"""Metrics through `evaluate`, loaded from the local module beside this file."""

from __future__ import annotations

from pathlib import Path

import evaluate

CXR_BINARY_PATH = str(Path(__file__).resolve().parent / "cxr_binary")


def load_cxr_metric() -> evaluate.EvaluationModule:
    return evaluate.load(CXR_BINARY_PATH)
