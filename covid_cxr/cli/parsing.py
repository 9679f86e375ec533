"""One argument parser for every command: dataclass fields as flags (transformers' `HfArgumentParser`), each shown
with its help and default, a config file as the first argument with the command line overriding it (as timm's
scripts do), and flags a command does not honour hidden from the help and refused with the reason. A flag must be
spelled whole (no prefix of one is taken for it), and an unknown one is answered with the flag it was likely meant
to be."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# Names other trainers give these flags, which no spelling distance finds
FLAG_SYNONYMS = {
    "--epochs": "--num_train_epochs",
    "--lr": "--learning_rate",
    "--batch_size": "--per_device_train_batch_size",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every flag's default after its help ("required" for a flag with none); the description kept as written."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        """argparse's wrapping, except that a word is never split: a path such as .../covid-cxr/build/model in a
        default stays whole, to be copied, at the cost of a long line."""
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required:
            return f"{action.help} (required)"
        if "(default:" in (action.help or ""):
            return action.help  # a help that states its default (a --no_flag's "on", not its dest's False) keeps it
        return super()._get_help_string(action)


def read_config(path: str) -> dict[str, Any]:
    """A YAML or JSON file of ``flag: value`` pairs (JSON is YAML too); a clear error when it is neither."""
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"error: cannot read the config file {path}: {err}") from None
    if not isinstance(config, dict):
        raise SystemExit(f"error: the config file {path} must hold `flag: value` pairs, one per line")
    return config


def _set_usage(parser: argparse.ArgumentParser, prog: str) -> None:
    """One short usage line (argparse's own lists every flag: over a hundred lines for finetune)."""
    required = [f"{a.option_strings[0]} {a.metavar or a.dest.upper()}" for a in parser._actions if a.required]
    parser.usage = " ".join([prog, "[CONFIG.yaml]", *required, "[--flag value ...]"])


def meant(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    """`--flag` arguments among `unknown`, each with the flag it was likely meant to be, as one sentence."""
    flags = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    guesses = []
    for arg in unknown:
        name = arg.split("=", 1)[0]
        guess = FLAG_SYNONYMS.get(name) or next(iter(difflib.get_close_matches(name, flags, n=1, cutoff=0.75)), None)
        if name.startswith("--") and guess:
            guesses.append(f"{name}: did you mean {guess}?")
    return "; ".join(guesses)


def config_settings(config: dict[str, Any], known: set[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A config file's `flag: value` pairs as field values; `no_flag: true` (as --help lists it) means `flag: false`."""
    settings = {}
    for key, value in config.items():
        if key not in known and key.startswith("no_") and key[3:] in known and isinstance(value, bool):
            key, value = key[3:], not value
        settings[key] = value
    if unknown := sorted(set(settings) - known):
        parser.error(f"the config file sets unknown flag(s): {', '.join(unknown)}")
    return settings


def parse_arguments(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    defaults: Mapping[str, Any] | None = None,
    refused: Mapping[str, str] | None = None,
) -> tuple:
    """The dataclasses filled from ``[CONFIG.yaml] [--flag value ...]``.

    `defaults` replaces fields' defaults (shown as such in --help; a required field with one is no longer required);
    `refused` maps flags this command does not honour to the reason, which `--flag` then prints instead of running.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(
        dataclass_types, prog=prog, description=description, formatter_class=HelpFormatter, allow_abbrev=False
    )
    for action in parser._actions:  # HfArgumentParser gives a --no_flag the help of the flag it turns off
        if action.option_strings and action.option_strings[0].startswith("--no_"):
            action.help = f"Turn off --{action.dest} (default: on)."
    known = {action.dest for action in parser._actions}
    refused = dict(refused or {})
    original = {action.dest: action.default for action in parser._actions if action.dest in refused}
    for action in parser._actions:
        if action.dest in refused:
            action.help = argparse.SUPPRESS
    settings = dict(defaults or {})
    _set_usage(parser, prog)
    if argv and not argv[0].startswith("-") and argv[0].endswith(CONFIG_SUFFIXES):
        settings |= config_settings(read_config(argv.pop(0)), known, parser)
    for before, arg in itertools.pairwise(["--", *argv]):  # a config file elsewhere is no flag's value: say so
        if arg.endswith(CONFIG_SUFFIXES) and not before.startswith("-"):
            parser.error(f"a config file ({arg}) must come first, before any flag")
    parser.set_defaults(**settings)  # every action of a field (--flag and --no_flag) takes the new default
    for action in parser._actions:
        if action.dest in settings:
            action.required = False
    _set_usage(parser, prog)
    namespace, remaining = parser.parse_known_args(argv)
    if remaining:
        hint = meant(remaining, parser)
        parser.error(f"unrecognised arguments: {' '.join(remaining)} ({hint + '; ' if hint else ''}see {prog} --help)")
    for dest, reason in refused.items():
        if getattr(namespace, dest) != original[dest]:
            parser.error(f"--{dest} is not used by this command: {reason}")
    values = vars(namespace)
    try:  # the dataclasses' own checks (TrainingArguments: bf16 without a GPU, ...) are the user's to fix
        return tuple(
            cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.init}) for cls in dataclass_types
        )
    except ValueError as err:
        parser.error(str(err))
