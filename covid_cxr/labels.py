"""The two classes, in the one order used by the dataset, the model config and the Space."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("non_covid", "covid")
ID2LABEL: dict[int, str] = dict(enumerate(CLASS_NAMES))
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}
POSITIVE: int = LABEL2ID["covid"]  # the COVID-19 class's index in every model's logits

# Spellings seen in public COVID-19 CXR folders (COVIDx, Kaggle) mapped onto the two classes.
_ALIASES: dict[str, str] = {
    "covid": "covid",
    "covid-19": "covid",
    "covid19": "covid",
    "covid_19": "covid",
    "positive": "covid",
    "non_covid": "non_covid",
    "non-covid": "non_covid",
    "noncovid": "non_covid",
    "normal": "non_covid",
    "pneumonia": "non_covid",
    "negative": "non_covid",
}


def normalise_label(raw: str) -> str | None:
    """Return the class name for a raw label or folder name, or None when it is not known."""
    return _ALIASES.get(raw.strip().lower())


def known_label_spellings() -> str:
    return ", ".join(sorted(_ALIASES))
