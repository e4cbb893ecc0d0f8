"""An offline HTML gallery: one card per picture with its caption, numbers and timing."""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;background:#fafafa}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ccc;padding-bottom:.3rem;margin-top:2.5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1.2rem}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:.7rem}
figure img{width:100%;image-rendering:pixelated;border-radius:3px}
figcaption b{display:block;margin:.4rem 0 .2rem} .numbers{font:12px monospace;color:#555;white-space:pre-wrap}
.note{color:#a00}
"""


@dataclass
class Entry:
    """One picture of the gallery."""

    section: str
    title: str
    file: str
    caption: str
    numbers: dict
    seconds: float
    link: str | None = None


@dataclass
class Gallery:
    """Collects entries and writes ``index.html`` next to their image files."""

    folder: Path
    title: str
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)

    def write(self) -> Path:
        """Writes ``index.html`` atomically and returns its path."""
        sections: dict[str, list[Entry]] = {}
        for entry in self.entries:
            sections.setdefault(entry.section, []).append(entry)
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        body += [f'<p class="note">{html.escape(note)}</p>' for note in self.notes]
        for name, entries in sections.items():
            body.append(f"<h2>{html.escape(name)}</h2><div class=cards>")
            body += [_card(entry) for entry in entries]
            body.append("</div>")
        page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style><body>{''.join(body)}</body></html>")
        path = self.folder / "index.html"
        temporary = path.with_suffix(".html.tmp")
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, path)
        return path


def _card(entry: Entry) -> str:
    numbers = json.dumps(entry.numbers, default=_compact)[:600]
    image = f'<img src="{html.escape(entry.file)}" alt="{html.escape(entry.title)}">'
    link = ""
    if entry.link:
        image = f'<a href="{html.escape(entry.link)}">{image}</a>'
        link = f' <a href="{html.escape(entry.link)}">Open {html.escape(entry.link)}</a>'
    return (f"<figure>{image}"
            f"<figcaption><b>{html.escape(entry.title)}</b>{html.escape(entry.caption)}{link}"
            f'<div class=numbers>{html.escape(numbers)}\n{entry.seconds:.2f} s</div></figcaption></figure>')


def _compact(value):
    return round(value, 4) if isinstance(value, float) else str(value)
