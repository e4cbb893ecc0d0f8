"""The one error class for mistakes a user can make (bad file, unknown layer, ...).

The command line prints these as a single line and exits with status 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConvscopeError(ValueError):
    """A user mistake: the message names what was wrong and what is accepted."""


def unknown_choice(kind: str, given: str, valid: Iterable[str], *, shown: int = 8) -> ConvscopeError:
    """Builds the error for a name that is not among ``valid``, suggesting the closest ones.

    Args:
        kind: what the name is of, e.g. ``"layer"``.
        given: the name the user typed.
        valid: every accepted name.
        shown: how many suggestions to list at most.
    """
    valid = list(valid)
    close = []
    if len(given) <= max(map(len, valid), default=0) * 2:  # matching a very long name is slow and pointless
        close = difflib.get_close_matches(given, valid, n=shown, cutoff=0.5)
        close = close or [v for v in valid if given.lower() in v.lower()][:shown]
    if close:
        hint = "closest: " + ", ".join(close)
    else:
        hint = "valid: " + ", ".join(valid[:shown]) + (" ..." if len(valid) > shown else "")
    return ConvscopeError(f"unknown {kind} {shorten(given)!r}; {hint}")


def shorten(text: str, limit: int = 60) -> str:
    """``text``, or its first ``limit`` characters and how many there were: user input is never
    echoed at any length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
