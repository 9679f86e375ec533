"""What a batch command scores, as a stream of items in the order of the input listing: files and folders as given
(a folder's supported images in sorted order, walked one folder at a time), or the rows of a `datasets` dataset.

The listing streams: the first film is scored before the last name of a million-file folder is read, and every
process of a launch walks the same listing and so agrees on every item's place in it without talking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count, islice
from pathlib import Path

import datasets

from covid_cxr.data.build import PATIENT_COLUMNS
from covid_cxr.data.imaging import walk_images
from covid_cxr.hub import is_hub_id

IMAGE_COLUMN = "image"
ROW_COLUMN = "row"  # a dataset row's place in its split


@dataclass(frozen=True)
class Item:
    """One film to score: its place in the listing, the columns naming it in the output, and its bytes or path
    (read only by the process that scores it)."""

    index: int
    ids: dict[str, object]
    read: Callable[[], str | Path | bytes] = field(compare=False)

    @property
    def name(self) -> str:
        """How logs and errors name it: its path, or its dataset row."""
        return str(self.ids.get("file", f"row {self.index}"))


class ListingError(ValueError):
    """An input the command cannot list; the message names it and says what to do."""


def file_items(inputs: Sequence[str], recursive: bool) -> Iterator[Item]:
    """Every named file as given (a missing or odd one gets its row with the reason), and the supported images of
    every named folder, each once."""
    seen: set[Path] = set()
    index = 0
    for name in inputs:
        path = Path(name)
        for found in walk_images(path, recursive) if path.is_dir() else (path,):
            if found not in seen:
                seen.add(found)
                yield Item(index, {"file": str(found)}, lambda found=found: found)
                index += 1


@dataclass
class DatasetInput:
    """A split of a `datasets` dataset: its rows, how many when known (not when streamed), its id columns."""

    rows: datasets.Dataset | datasets.IterableDataset
    num_rows: int | None
    id_columns: list[str]

    def items(self) -> Iterator[Item]:
        if isinstance(self.rows, datasets.Dataset):  # random access: a process reads only the films it scores
            ids = self.rows.select_columns(self.id_columns) if self.id_columns else None
            for index in range(self.rows.num_rows):
                row = ids[index] if ids is not None else {}
                yield Item(index, {ROW_COLUMN: index} | row, lambda index=index: image_source(self.rows[index]))
            return
        for index, row in enumerate(self.rows):  # a stream: every process reads every row
            kept = {name: row[name] for name in self.id_columns}
            yield Item(index, {ROW_COLUMN: index} | kept, lambda row=row: image_source(row))


def image_source(row: dict) -> str | bytes:
    """What load_image reads for an undecoded `image` cell: its bytes, else its path."""
    cell = row[IMAGE_COLUMN]
    return cell.get("bytes") or cell.get("path") or b""


def open_dataset(name: str, split: str, id_columns: Sequence[str] | None, streaming: bool) -> DatasetInput:
    """The split of a dataset folder (save_to_disk) or Hub id, its image column left undecoded (each film is read
    by the loader every command shares); the id columns kept are `id_columns`, else `file_name` when there is one.
    Patient columns are never kept."""
    path = Path(name)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ListingError(f"--dataset {name} has no split {split!r} (it has {', '.join(loaded)})")
            loaded = loaded[split]
    elif is_hub_id(name):
        try:
            loaded = datasets.load_dataset(name, split=split, streaming=streaming)
        except (OSError, ValueError) as err:  # offline, no such dataset or split, no access
            raise ListingError(f"--dataset {name} could not be loaded from the Hub: {err}") from err
    else:
        raise ListingError(f"--dataset {name}: neither a dataset folder (save_to_disk) nor a Hub id (org/name)")
    columns = list(loaded.column_names or [])
    if IMAGE_COLUMN not in columns:
        raise ListingError(f"--dataset {name}: no {IMAGE_COLUMN!r} column (it has {', '.join(columns)})")
    chosen = list(id_columns) if id_columns else [c for c in ("file_name",) if c in columns]
    if unknown := [c for c in chosen if c not in columns]:
        raise ListingError(f"--id_columns {' '.join(unknown)}: not in --dataset {name} (it has {', '.join(columns)})")
    if private := [c for c in chosen if c in PATIENT_COLUMNS]:
        raise ListingError(f"--id_columns {' '.join(private)}: patient tags are never written out; choose others")
    rows = loaded.cast_column(IMAGE_COLUMN, datasets.Image(decode=False))
    return DatasetInput(rows, getattr(rows, "num_rows", None), chosen)


def films_digest(batch: list[Item]) -> str:
    """What names a batch's films (their places and ids), hashed: a resumed run checks each done batch by it."""
    named = json.dumps([[item.index, item.ids] for item in batch], default=str)
    return hashlib.sha256(named.encode()).hexdigest()[:16]


def batches(items: Iterator[Item], size: int) -> Iterator[tuple[int, list[Item]]]:
    """(batch number, its items): consecutive runs of `size` items, numbered from 0."""
    for number in count():
        batch = list(islice(items, size))
        if not batch:
            return
        yield number, batch
