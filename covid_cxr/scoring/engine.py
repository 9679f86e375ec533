"""Score a listing in batches, on every process of an `accelerate launch`, each row written as its batch is done.

The listing is cut into numbered batches of a fixed size; every `num_processes` consecutive batches make a block,
shared out by accelerate's `split_between_processes`, so a batch holds the same films however many processes score
it (and gives the same figures). While the model runs on one batch, a small pool of threads decodes the next ones
(JPEG, PNG, DICOM), so the device does not wait on the files.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import torch
from accelerate import PartialState
from PIL import Image
from tqdm.auto import tqdm

from covid_cxr.data.imaging import ImageError, fault_reason, load_image
from covid_cxr.scoring.listing import Item, batches, films_digest
from covid_cxr.scoring.store import RunError, Shards

logger = logging.getLogger(__name__)
PREFETCH = 2  # batches decoded ahead of the model

Decoded = Image.Image | dict  # the film, or the row that says why it could not be read
Scorer = Callable[[list[Image.Image]], list[dict]]  # decoded films to their rows' result columns


def launch_state() -> PartialState:
    """This process's place in the launch (one process when not launched): gloo between CPU processes."""
    return PartialState(cpu=not torch.cuda.is_available())


def own_batches(
    items: Iterator[Item], size: int, state: PartialState, done: dict[int, str]
) -> Iterator[tuple[int, list[Item], bool]]:
    """Every batch as (number, items, whether this process scores it): its share of each block, less the
    batches done before (RunError when one of those held other films: the listing changed); the rest are only
    counted."""
    numbered = batches(items, size)
    while block := list(islice(numbered, state.num_processes)):
        for number, batch in block:
            if number in done and done[number] != films_digest(batch):
                raise RunError(
                    f"the inputs changed since the interrupted run: batch {number} held other films then (it "
                    f"begins with {batch[0].name} now); --overwrite starts again"
                )
        with state.split_between_processes(block) as mine:
            own = {number for number, _ in mine if number not in done}
        for number, batch in block:
            yield number, batch, number in own


def decode(item: Item, max_bytes: int) -> Decoded:
    """The film, or its row's reason: a file that cannot be read is one row, never the end of the run."""
    try:
        return load_image(item.read(), max_bytes=max_bytes).image
    except ImageError as err:
        return {"status": "unreadable", "reason": str(err)}
    except Exception as err:  # a fault in this code or a library, not in the file: reported, never fatal
        return {"status": "error", "reason": fault_reason(Path(item.name), err)}


def decoded(
    numbered: Iterator[tuple[int, list[Item], bool]], max_bytes: int, workers: int
) -> Iterator[tuple[int, list[Item], list[Decoded] | None]]:
    """The batches, this process's with their films decoded by a pool of `workers` threads, PREFETCH batches
    ahead of the one being scored; the others' (films None) in their turn."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[int, list[Item], list[Future] | None]] = deque()
        for number, batch, own in numbered:
            pending.append((number, batch, [pool.submit(decode, item, max_bytes) for item in batch] if own else None))
            while pending and (len(pending) > PREFETCH or pending[0][2] is None):
                yield finished(*pending.popleft())
        while pending:
            yield finished(*pending.popleft())


def finished(number: int, batch: list[Item], futures: list[Future] | None) -> tuple:
    return number, batch, None if futures is None else [future.result() for future in futures]


def score_batch(scorer: Scorer, films: list[Decoded], names: list[str]) -> list[dict]:
    """The result columns of each film (the unreadable keep their reason); when the batch trips a fault in the
    code, each film is scored alone, so that only the faulty one gets the error."""
    readable = [index for index, film in enumerate(films) if isinstance(film, Image.Image)]
    results = [film if isinstance(film, dict) else {} for film in films]
    try:
        scored = scorer([films[index] for index in readable]) if readable else []
    except Exception as err:  # a fault in this code or a library, not in a file: reported, never fatal
        if len(readable) == 1:
            scored = [{"status": "error", "reason": fault_reason(Path(names[readable[0]]), err)}]
        else:
            scored = [score_batch(scorer, [films[index]], [names[index]])[0] for index in readable]
    for index, result in zip(readable, scored, strict=True):
        results[index] = result
    return results


def run(
    items: Iterator[Item],
    scorer: Scorer,
    shards: Shards,
    state: PartialState,
    batch_size: int,
    max_bytes: int,
    workers: int,
    total: int | None,
) -> int:
    """Score this process's share of `items` into its shard, skipping the batches done before; the main process
    shows one progress bar for all of them. Returns how many films the launch scored (not done before)."""
    writer = shards.writer(state.process_index)
    done = shards.done()
    state.wait_for_everyone()  # every process has read what is done before any writes more
    numbered = own_batches(items, batch_size, state, done)
    bar = tqdm(total=total, desc="Scoring", unit="img", disable=not state.is_main_process)
    fresh = 0
    try:
        for number, batch, films in decoded(numbered, max_bytes, workers):
            if films is not None:
                results = score_batch(scorer, films, [item.name for item in batch])
                rows = [item.ids | result for item, result in zip(batch, results, strict=True)]
                writer.write(number, films_digest(batch), rows)
            bar.update(len(batch))
            fresh += 0 if number in done else len(batch)
    finally:
        bar.close()
        writer.close()
    state.wait_for_everyone()
    return fresh
