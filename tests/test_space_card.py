"""The Space card's front matter against the Hub's Spaces configuration rules, so a push is not refused (or the
Space left unconfigured) for a field the Hub does not accept."""

from __future__ import annotations

import gradio
from huggingface_hub import SpaceCard

from tests.conftest import REPO_ROOT

CARD = REPO_ROOT / "space" / "README.md"
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}  # the Hub's colorFrom/colorTo
SDKS = {"gradio", "docker", "static", "streamlit"}
KNOWN_FIELDS = {
    "title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version", "app_file", "app_port",
    "base_path", "fullWidth", "header", "short_description", "models", "datasets", "tags", "thumbnail", "pinned",
    "hf_oauth", "hf_oauth_scopes", "disable_embedding", "startup_duration_timeout", "custom_headers",
    "preload_from_hub", "license", "license_name", "license_link",
}  # fmt: skip
MAX_SHORT_DESCRIPTION = 60


def hub_rule_violations(metadata: dict) -> list[str]:
    """What the Hub would reject or ignore in a Space card's front matter (its configuration reference)."""
    problems = [f"unknown field {key}" for key in metadata if key not in KNOWN_FIELDS]
    problems += [f"{key} is not a Hub colour" for key in ("colorFrom", "colorTo") if metadata.get(key) not in COLOURS]
    if metadata.get("sdk") not in SDKS:
        problems.append("sdk is not one the Hub runs")
    if len(metadata.get("short_description", "")) > MAX_SHORT_DESCRIPTION:
        problems.append(f"short_description is over {MAX_SHORT_DESCRIPTION} characters")
    if not isinstance(metadata.get("pinned", False), bool):
        problems.append("pinned is not a boolean")
    if len(metadata.get("emoji", "x")) != 1:
        problems.append("emoji is not one emoji")
    for key in ("models", "datasets", "tags"):
        if not isinstance(metadata.get(key, []), list):
            problems.append(f"{key} is not a list")
    return problems


def test_space_card_front_matter_follows_the_hub_rules() -> None:
    card = SpaceCard.load(CARD)  # huggingface_hub parses the YAML into SpaceCardData
    metadata = card.data.to_dict()
    assert hub_rule_violations(metadata) == []
    assert metadata["sdk_version"] == gradio.__version__  # the version the tests ran
    assert (REPO_ROOT / "space" / metadata["app_file"]).is_file()
    requirements = (REPO_ROOT / "space" / "requirements.txt").read_text()
    assert f"gradio=={metadata['sdk_version']}" in requirements


def test_the_rules_catch_what_the_hub_refuses() -> None:
    bad = {"sdk": "flask", "colorFrom": "black", "colorTo": "gray", "short_description": "x" * 61, "colour": 1}
    assert len(hub_rule_violations(bad)) == 4
