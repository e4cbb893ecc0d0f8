"""Class names: lookup by index or by (fuzzy, case-insensitive) name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from convscope.errors import ConvscopeError, shorten


@dataclass(frozen=True)
class Labels:
    """Class names of a classifier.

    Attributes:
        names: the short name of each class, by index.
        synonyms: every accepted name of each class (lower case), by index.
    """

    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.names)

    def name(self, index: int) -> str:
        return self.names[index]

    def index(self, target: str | int) -> int:
        """Finds a class by index (int or digits) or name, case-insensitively.

        Raises:
            ConvscopeError: no class matches; the message suggests the closest names.
        """
        if len(str(target)) > 200:
            raise ConvscopeError(f"unknown class {shorten(str(target))!r}; give a class name or an index "
                                 f"0..{len(self) - 1}")
        if isinstance(target, int) or str(target).strip().isdigit():
            index = int(target)
            if not 0 <= index < len(self):
                raise ConvscopeError(f"class index {index} is out of range; accepted: 0..{len(self) - 1}")
            return index
        wanted = str(target).strip().lower()
        for i, names in enumerate(self.synonyms):
            if wanted in names:
                return i
        every = {n: i for i, names in enumerate(self.synonyms) for n in names}
        close = difflib.get_close_matches(wanted, list(every), n=5, cutoff=0.6)
        close = close or [n for n in every if wanted in n][:5]
        hint = ("did you mean: " + ", ".join(f"{n} ({every[n]})" for n in close)) if close else \
            f"give a class name or an index 0..{len(self) - 1}"
        raise ConvscopeError(f"unknown class {shorten(str(target))!r}; {hint}")

    @classmethod
    def numbered(cls, count: int) -> "Labels":
        """Labels ``"0" .. "count-1"`` for networks that come without names."""
        names = tuple(str(i) for i in range(count))
        return cls(names, tuple((n,) for n in names))


@cache
def imagenet_labels() -> Labels:
    """The 1000 ImageNet-1k classes with their WordNet synonyms."""
    text = resources.files("convscope.models").joinpath("imagenet_classes.tsv").read_text("utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    names = tuple(row[1] for row in rows)
    synonyms = tuple(tuple(dict.fromkeys([row[1].lower(), *(s.strip().lower() for s in row[2].split(","))]))
                     for row in rows)
    return Labels(names, synonyms)
