"""The command line's shared parts: a parser with one-line errors, and one flag per `Config` field.

Every `Config` field is a `train` (and `compare`, `sweep`) flag (`--lora-r 16`, `--no-bf16`), its help
taken from the field; values stay strings here and are typed and validated by `config.merge`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Sequence
from typing import Any, NoReturn

from intentlab import config as C
from intentlab.methods import NAMES, get


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage dumps."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help`.\n")

    def unrecognized(self, extras: Sequence[str]) -> NoReturn:
        """One-line error for words this (sub)command does not take, with the closest of its own flags."""
        message = f"unrecognized arguments: {' '.join(extras)}"
        flags = [o for a in self._actions for o in a.option_strings]
        for word in (w for w in extras if w.startswith("--")):
            close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.7)
            if close:
                message += f" (did you mean {close[0]}?)"
                break
        self.error(message)

    def parse_args_anywhere(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """parse_args, except that words after the options still join the command's list positional:
        `intentlab predict RUN --top-k 5 "a text"` classifies "a text" (plain argparse stops filling
        `texts` at the first option and calls the rest unrecognized)."""
        args, extras = self.parse_known_args(argv)
        if not extras:
            return args
        command = next(
            (
                a.choices[args.command]
                for a in self._actions
                if isinstance(a, argparse._SubParsersAction) and getattr(args, "command", None) in a.choices
            ),
            self,
        )
        listed = next(
            (b.dest for b in command._actions if not b.option_strings and b.nargs in ("*", "+")), None
        )
        cut = extras.index("--") if "--" in extras else len(extras)
        words, literal = extras[:cut], extras[cut + 1 :]  # after `--`, texts may start with "-"
        if listed is None or any(w.startswith("-") for w in words):
            command.unrecognized(extras)
        getattr(args, listed).extend(words + literal)
        return args


def shipped_values() -> dict[str, dict[str, object]]:
    """{field: {method: value}} for every field a method's shipped config sets differently from the
    dataclass default, so --help can say what a run of each method really uses."""
    out: dict[str, dict[str, object]] = {}
    for method in NAMES:
        for key, value in C.read_yaml(get(method).config_file).items():
            name = str(key).replace("-", "_")
            if name in C.FIELDS and name != "method":
                default = (
                    C.FIELDS[name].default if C.FIELDS[name].default is not dataclasses.MISSING else None
                )
                if C.coerce(name, value) != default:
                    out.setdefault(name, {})[method] = value
    return out


def _shown(value: Any) -> str:
    """A default as the user types it: lists comma-separated, mappings as key=value."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def flag_help(name: str, field: Any, shipped: dict[str, dict[str, object]]) -> str:
    """A field's help: its text, its default (unless the text already says it, or there is none) and,
    where they differ, the methods' shipped values."""
    text = field.metadata["help"]
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    parts = [] if default is None or "default" in text else [f"default: {_shown(default)}"]
    per = shipped.get(name)
    if per:
        parts.append("configs/<method>.yaml: " + ", ".join(f"{m} {_shown(v)}" for m, v in per.items()))
    return (f"{text} [{'; '.join(parts)}]" if parts else text).replace("%", "%%")


def add_config_flags(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per Config field; values stay strings here and are typed/validated by config.merge."""
    shipped = shipped_values()
    for name, f in C.FIELDS.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        help_ = flag_help(name, f, shipped)
        if C.field_kind(name) is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_)


def config_flags(args: argparse.Namespace, skip: Sequence[str] = ("method",)) -> dict[str, Any]:
    """The Config fields given on the command line (None: not given)."""
    return {name: getattr(args, name, None) for name in C.FIELDS if name not in skip}


def config_from_args(args: argparse.Namespace) -> C.Config:
    return C.resolve(args.method, args.config, config_flags(args))
