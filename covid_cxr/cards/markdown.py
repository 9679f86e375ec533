"""What both cards share: where their templates are, and pandas tables as GitHub markdown."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Links to the top-level dataset_card.md and model_card.md; a built wheel carries copies of them.
TEMPLATES = Path(__file__).resolve().parent / "templates"
LICENSE_FILE = "LICENSE.md"  # what a card's `license_link` points to when its licence is "other"


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub table, without needing the optional `tabulate` dependency."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in frame.iterrows()]
    return "\n".join(lines)
