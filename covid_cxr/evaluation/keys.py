"""The flat keys of all_results.json, spelled once for every writer (the reports) and reader (the Space, the
benchmarks). Plain strings only: the Space imports this without the metric code."""

from __future__ import annotations

ALL = "all"  # every image of a split
MIXED = "mixed_sources"  # the images of the sources that hold both classes
# validation and test (as Trainer.log_metrics names them), the frozen-feature probe on test, the yardstick's
# cross-validation
VALIDATION, TEST, PROBE_TEST, CV = "eval", "test", "probe_test", "cv"


def metric_key(prefix: str, subset: str, metric: str) -> str:
    """test_roc_auc, test_ieee8023_sensitivity, cv_mixed_sources_roc_auc_low: the subset ALL has no infix."""
    return f"{prefix}_{metric}" if subset == ALL else f"{prefix}_{subset}_{metric}"
