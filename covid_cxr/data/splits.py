"""Patient-level train/validation/test splits, stratified by label and source.

Images are first joined into groups that must stay together: same patient id, same ``near_dup_group``, or
linked as near-duplicates. scikit-learn's ``StratifiedGroupKFold`` then deals the groups into 20 folds that
each mirror the label x source mix, and whole folds go to train, validation and test. Split fractions are
therefore honoured in steps of 5% (coarser for tiny datasets, whose largest stratum has fewer than 20 images).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
N_FOLDS = 20


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def group_ids(keys: Sequence[Iterable[str]], links: Iterable[tuple[int, int]] = ()) -> np.ndarray:
    """Give every image a group id: images sharing any non-empty key, or linked by a pair, share a group."""
    union = _UnionFind(len(keys))
    first_with_key: dict[str, int] = {}
    for index, image_keys in enumerate(keys):
        for key in image_keys:
            if key:
                union.union(index, first_with_key.setdefault(key, index))
    for i, j in links:
        union.union(i, j)
    return np.array([union.find(i) for i in range(len(keys))])


def strata_of(sources: Iterable[str], labels: Iterable[int]) -> list[str]:
    """Each image's source x label stratum, the unit the splits, the folds and the balanced weights mirror."""
    return [f"{source}/{label}" for source, label in zip(sources, labels, strict=True)]


def group_names(groups: np.ndarray, names: Sequence[str]) -> list[str]:
    """Name every group after its first member (e.g. a file name), so the group is readable in a dataset column."""
    first: dict[int, str] = {}
    for group, name in zip(groups.tolist(), names, strict=True):
        first.setdefault(group, name)
    return [first[group] for group in groups.tolist()]


def assign_splits(
    strata: Sequence[str], groups: np.ndarray, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 42
) -> list[str]:
    """Return a split name per image so that no group is in two splits and each split mirrors the strata."""
    if len(fractions) != len(SPLIT_NAMES) or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    strata_array = np.asarray(strata)
    largest_stratum = int(np.unique(strata_array, return_counts=True)[1].max())
    n_folds = min(N_FOLDS, largest_stratum, len(np.unique(groups)))
    if n_folds < len(SPLIT_NAMES):
        raise ValueError(f"only {n_folds} patient groups per stratum: too few to split by patient")
    fold_counts = np.maximum(np.round(np.asarray(fractions) * n_folds).astype(int), (np.asarray(fractions) > 0))
    fold_counts[0] = n_folds - fold_counts[1:].sum()
    fold_to_split = np.repeat(np.arange(len(SPLIT_NAMES)), fold_counts)
    folds = deal_folds(strata_array, groups, n_folds, seed)
    labels = np.array([stratum.rsplit("/", 1)[-1] for stratum in strata_array])  # strata_of's "source/label"
    fold_labels = [set(labels[folds == fold]) for fold in range(n_folds)]
    fold_to_split = cover_labels(fold_to_split, fold_labels)
    return [SPLIT_NAMES[fold_to_split[fold]] for fold in folds]


def _missing(fold_to_split: np.ndarray, fold_labels: list[set[str]]) -> list[tuple[int, str]]:
    """(split, label) pairs where the split holds no image of a label the data has."""
    every = set().union(*fold_labels)
    held = [set().union(*(fold_labels[f] for f in np.flatnonzero(fold_to_split == s))) for s in range(len(SPLIT_NAMES))]
    return [(s, label) for s in range(len(SPLIT_NAMES)) for label in sorted(every - held[s])]


def cover_labels(fold_to_split: np.ndarray, fold_labels: list[set[str]]) -> np.ndarray:
    """Swap whole folds between splits until every split holds every label, where the folds allow it.

    A small dataset's rare class fills few folds, and the plain order of folds can leave a split without it
    (a training split of one class cannot be learnt from; a validation split of one class cannot set a
    threshold). A mapping that already covers every label, as on any dataset of a few dozen images per class,
    is returned unchanged."""
    mapping = fold_to_split.copy()
    while missing := _missing(mapping, fold_labels):
        best = None
        for f in range(len(mapping)):
            for g in range(len(mapping)):
                if mapping[f] == mapping[g]:
                    continue
                trial = mapping.copy()
                trial[f], trial[g] = mapping[g], mapping[f]
                if len(_missing(trial, fold_labels)) < len(missing):
                    best = trial
                    break
            if best is not None:
                break
        if best is None:
            return mapping  # the folds cannot cover it: the training step says which split lacks which class
        mapping = best
    return mapping


def deal_folds(strata: Sequence[str], groups: np.ndarray, n_folds: int, seed: int = 42) -> np.ndarray:
    """Deal the groups into `n_folds` folds that each mirror the strata; returns the fold index of every image.

    The splits are made of whole folds, and cross-validation uses the folds themselves, so both keep a patient
    (and its near-duplicates) on one side."""
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(strata), dtype=int)
    with warnings.catch_warnings():  # small strata (5 figure1 negatives) cannot fill 20 folds; that is expected
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(strata)), np.asarray(strata), groups)):
            fold_of[test_index] = fold
    return fold_of
