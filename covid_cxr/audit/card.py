"""The occlusion figures of a model's audit, as the model card renders them (from the audit's `audit.json`).

The card lies below the audit in the package's layering, so it takes this dict as data: figures for machines,
`shown` strings (each figure with its interval) and the plain-words `sentence` for the page.
"""

from __future__ import annotations

import json
from pathlib import Path

from covid_cxr.audit.occlusion import LUNGS_HIDDEN, LUNGS_ONLY, WHOLE
from covid_cxr.audit.plots import SUBSET_NAMES
from covid_cxr.audit.report import looks, number, signed
from covid_cxr.evaluation.keys import ALL, MIXED


def occlusion_figures(audit_json: str | Path) -> dict[str, dict[str, object]]:
    """The card's figures of an audit's `audit.json` (see `card_figures`)."""
    return card_figures(json.loads(Path(audit_json).read_text())["occlusion"])


def card_figures(occlusion: dict | None) -> dict[str, dict[str, object]]:
    """{subset: {name, n, whole, lungs_only, lungs_hidden (ROC AUC {value, low, high}), lungs_hidden_change,
    lungs_hidden_kept, verdict, sentence, shown}} for all images and the mixed-label ones, from the occlusion
    test's figures (audit.json's "occlusion", or `run.occlusion_test`); {} when there was no occlusion test."""
    occlusion = occlusion or {}
    figures = {}
    for subset in (s for s in (ALL, MIXED) if s in occlusion):
        entry, hidden = occlusion[subset], occlusion[subset][LUNGS_HIDDEN]
        aucs = {view: entry[view]["roc_auc"] for view in (WHOLE, LUNGS_ONLY, LUNGS_HIDDEN)}
        figures[subset] = aucs | {
            "name": SUBSET_NAMES[subset],
            "n": entry["n"],
            "lungs_hidden_change": hidden.get("change"),
            "lungs_hidden_kept": hidden.get("kept"),
            "verdict": entry["verdict"],
            "sentence": looks(entry),
            "shown": {view: number(auc) for view, auc in aucs.items()}
            | {
                "lungs_hidden_change": signed(hidden["change"]) if "change" in hidden else "n/a",
                "lungs_hidden_kept": number(hidden["kept"], "{:.0%}") if "kept" in hidden else "n/a",
            },
        }
    return figures
