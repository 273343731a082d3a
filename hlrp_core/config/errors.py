"""The one error type for bad configuration, plus helpers that phrase messages the same way everywhere:
every message names the knob, the value and the fix."""

from __future__ import annotations

import difflib
from typing import Any, Iterable


class ConfigError(ValueError):
    """A configuration problem found before any work started. ``problems`` lists one message per knob."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(
            self.problems[0] if len(self.problems) == 1 else
            "invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The closest valid names for a typo (difflib ratio on the full dotted key and on the leaf)."""
    candidates = list(candidates)
    full = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    leaf = name.rsplit(".", 1)[-1]
    by_leaf = [c for c in candidates if c.rsplit(".", 1)[-1] in
               difflib.get_close_matches(leaf, [c.rsplit(".", 1)[-1] for c in candidates], n=n, cutoff=0.75)]
    out: list[str] = []
    for c in full + sorted(by_leaf, key=lambda c: -difflib.SequenceMatcher(None, c, name).ratio()):
        if c not in out:
            out.append(c)
    return out[:n]


def check_choice(problems: list[str], key: str, value: Any, choices: Iterable[Any]) -> None:
    """Append a message to ``problems`` when ``value`` is not one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        hint = closest(str(value), [str(c) for c in choices], n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        problems.append(f"{key}={value!r} is not allowed; choose one of {choices}{did}")


def check(problems: list[str], ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)
