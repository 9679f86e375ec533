"""The flat keys of all_results.json, spelled once for every writer (the reports) and reader (the Space, the
benchmarks). Plain strings only: the Space imports this without the metric code."""

from __future__ import annotations

ALL = "all"  # every image of a split
MIXED = "mixed_sources"  # the images of the sources that hold both classes
# validation and test (as Trainer.log_metrics names them), the frozen-feature probe on test, the yardstick's
# cross-validation
VALIDATION, TEST, PROBE_TEST, CV = "eval", "test", "probe_test", "cv"
PROBE = "probe"  # the source probe on frozen features of train and test: probe_source_accuracy, probe_n_sources
# Figures of the whole run, without a subset: the calibration's, the scope guard's and Trainer's own
TEMPERATURE, THRESHOLD = "temperature", "threshold"
GUARD_FALSE_REJECTS = "scope_guard_test_false_reject_rate"  # share of test X-rays the scope guard would refuse
TRAIN_RUNTIME = "train_runtime"  # seconds of the Trainer loop (Trainer.train's metrics)


def metric_key(prefix: str, subset: str, metric: str) -> str:
    """test_roc_auc, test_ieee8023_sensitivity, cv_mixed_sources_roc_auc_low: the subset ALL has no infix."""
    return f"{prefix}_{metric}" if subset == ALL else f"{prefix}_{subset}_{metric}"


# What the Space quotes (covid_cxr.serving.wording), by the keys the reports write: the test split's mixed-label
# figures at the threshold, and the cross-validated ROC AUC of the recipe when the card quotes one
TEST_SENSITIVITY, TEST_SPECIFICITY, TEST_N = (metric_key(TEST, MIXED, m) for m in ("sensitivity", "specificity", "n"))
CV_ROC_AUC, CV_ROC_AUC_LOW, CV_ROC_AUC_HIGH, CV_N = (
    metric_key(CV, MIXED, m) for m in ("roc_auc", "roc_auc_low", "roc_auc_high", "n")
)
CV_FOLDS = metric_key(CV, ALL, "folds")
QUOTED = (TEST_SENSITIVITY, TEST_SPECIFICITY, TEST_N, CV_ROC_AUC, CV_ROC_AUC_LOW, CV_ROC_AUC_HIGH, CV_N, CV_FOLDS)
