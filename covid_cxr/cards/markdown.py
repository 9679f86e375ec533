"""What the cards and the project's pages share: where the card templates are, and the one GitHub table writer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

# Links to the top-level dataset_card.md and model_card.md; a built wheel carries copies of them.
TEMPLATES = Path(__file__).resolve().parent / "templates"


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub table, its index the first column, without the optional `tabulate` dependency."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in frame.iterrows()]
    return "\n".join(lines)


def markdown_rows(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows of cells under `header` as a GitHub table: markdown_table with the first column as the index."""
    frame = pd.DataFrame(list(rows), columns=list(header), dtype=object)  # object: cells print as given
    return markdown_table(frame.set_index(header[0]))
