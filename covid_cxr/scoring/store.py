"""Where a batch command's rows wait until the run is complete, so that a killed run goes on where it stopped.

Beside the output, a hidden work folder holds the run's settings (`run.json`) and one shard per process and
attempt: a line per batch, appended and flushed to disk as soon as the batch is scored. A resumed run reads which
batches are done and scores only the others; a torn last line (a kill mid-write) is not a done batch. At the end
the main process merges the shards, batch by batch in the order of the listing, into one CSV or Parquet file
written beside the output and renamed onto it, and removes the work folder.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SETTINGS = "run.json"
PARQUET_SUFFIX = ".parquet"
PARQUET_ROWS = 50_000  # rows per Parquet row group: bounded memory on a merge of millions


class RunError(ValueError):
    """A run that cannot start or go on as asked; the message says why and what to do."""


def work_folder(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


@dataclass(frozen=True)
class Shards:
    """The work folder of a run into `output`."""

    output: Path

    @property
    def folder(self) -> Path:
        return work_folder(self.output)

    def check(self, settings: dict, resume: bool, overwrite: bool) -> bool:
        """Whether the run goes on from an interrupted one (True) or starts afresh; RunError when an interrupted
        run's rows are there and neither --resume nor --overwrite says what to do with them, or when --resume
        meets different settings (each one named)."""
        saved = self.folder / SETTINGS
        if not saved.is_file() or overwrite:
            return False
        if not resume:
            raise RunError(
                f"an interrupted run into {self.output} left its rows in {self.folder}: pass --resume to go on from "
                "them, or --overwrite to start again"
            )
        before = json.loads(saved.read_text(encoding="utf-8"))
        if changed := [f"{key} was {before.get(key)!r}, now {value!r}" for key, value in settings.items()
                       if before.get(key) != value]:  # fmt: skip
            raise RunError(
                f"--resume: the interrupted run into {self.output} scored with other settings ({'; '.join(changed)})"
                ": give the same ones, or --overwrite to start again"
            )
        return True

    def start(self, settings: dict, resume: bool) -> None:
        """Make the work folder for a fresh run (emptying an earlier one), or keep it to go on from."""
        if resume:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir()
        (self.folder / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("rank*.jsonl"))

    def done(self) -> dict[int, str]:
        """The batches already scored: number -> the digest of the films it held."""
        return {number: batch["films"] for path in self.files() for number, batch in read_shard(path)}

    def writer(self, rank: int) -> ShardWriter:
        return ShardWriter(self.folder / f"rank{rank}-{uuid.uuid4().hex[:12]}.jsonl")

    def merged(self) -> Iterator[dict]:
        """Every row, in the order of the listing (each shard holds its batches in rising order)."""
        streams = [read_shard(path) for path in self.files()]
        previous = -1
        for number, batch in heapq.merge(*streams, key=lambda numbered: numbered[0]):
            if number == previous:  # a batch scored twice would be a fault: its first rows stand
                continue
            if number != previous + 1:
                raise RunError(f"batch {previous + 1} of the run into {self.output} is missing from {self.folder}")
            previous = number
            yield from batch["rows"]


def read_shard(path: Path) -> Iterator[tuple[int, dict]]:
    """(batch number, batch) per complete line of a shard; a torn line (a kill mid-write) ends it."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                batch = json.loads(line)
            except json.JSONDecodeError:
                return
            yield batch["batch"], batch


class ShardWriter:
    """One process's shard of one attempt: a batch per line, flushed and synced before the next batch starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = None

    def write(self, number: int, films: str, rows: list[dict]) -> None:
        """Batch `number`'s rows, with the digest of the films it held (what a resumed run checks)."""
        if self.handle is None:
            self.handle = self.path.open("a", encoding="utf-8")
        self.handle.write(json.dumps({"batch": number, "films": films, "rows": rows}) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def write_output(rows: Iterable[dict], output: Path, columns: Sequence[str], schema: pa.Schema) -> Counter:
    """Write the rows into a hidden file beside `output` (CSV, or Parquet by its suffix), renamed into place when
    complete; returns the count of each status."""
    counts: Counter = Counter()
    partial = output.with_name(f".{output.name}.{uuid.uuid4().hex[:12]}.partial")
    counted = (counts.update([str(row["status"])]) or row for row in rows)
    try:
        if output.suffix.lower() == PARQUET_SUFFIX:
            write_parquet(counted, partial, columns, schema)
        else:
            with partial.open("x", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(counted)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return counts


def write_parquet(rows: Iterable[dict], path: Path, columns: Sequence[str], schema: pa.Schema) -> None:
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict] = []
        for row in rows:
            chunk.append({name: row.get(name) for name in columns})
            if len(chunk) == PARQUET_ROWS:
                writer.write_table(pa.Table.from_pylist(chunk, schema))
                chunk = []
        writer.write_table(pa.Table.from_pylist(chunk, schema))
