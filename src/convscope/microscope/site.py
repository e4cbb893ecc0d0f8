"""The microscope's pages: static HTML over pictures already on disk (nothing is computed here).

``index.html`` lists the layers; ``layers/LAYER/index.html`` shows every unit of a layer as a
thumbnail; ``layers/LAYER/NNNN.html`` is one unit's page. Every link is relative, so the site
opens from the file system and from any server path (``convscope serve --microscope``).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

STYLE = """body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f2; color: #1f2933; }
header { background: #1f2933; color: #fff; padding: 0.6rem 1rem; }
header a { color: #fff; } main { padding: 1rem; max-width: 1200px; }
h1 { font-size: 1.2rem; margin: 0; } h2 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
.units { display: flex; flex-wrap: wrap; gap: 6px; }
.units a { text-decoration: none; color: #1f2933; font-size: 0.75rem; }
.units img { width: 72px; height: 72px; display: block; image-rendering: auto; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; } figure img { width: 192px; display: block; }
figure img.crisp { image-rendering: pixelated; } header nav { float: right; } header nav a { font-size: 0.85rem; }
figcaption { font-size: 0.8rem; color: #3e4c59; max-width: 192px; }
.wide img { width: 288px; } .wide figcaption { max-width: 288px; }
.layer { background: #fff; border-radius: 6px; padding: 0.6rem 0.8rem; margin-bottom: 1rem; }
nav.pager { display: flex; gap: 1rem; margin: 0.6rem 0; } p.hint { font-size: 0.85rem; color: #52606d; }
"""


#: Units of each layer shown on the index page (every unit is on its layer's page).
INDEXED = 24


@dataclass(frozen=True)
class LayerPages:
    """What the pages of one layer show: its ``channels`` units, the receptive field's size in
    pixels (None for whole-image units) and whether top / bottom dataset patches and an
    activation atlas exist."""

    @property
    def shown_side(self) -> int:
        """The side the unit pictures are shown at: the whole multiple of :attr:`side` nearest 192 px."""
        return self.side * max(1, round(192 / self.side)) if self.side else 192


    name: str
    channels: int
    field: int | None
    top: bool
    bottom: bool
    atlas: bool = False
    side: int = 0  #: the unit pictures' side in pixels (shown at a whole multiple of it, never blurred)


def write_site(site: Path, model: str, layers: list[LayerPages], *, diverse: int, dataset: str | None,
               photo: str, meaning: str = "") -> None:
    """Writes every page and ``style.css`` into ``site``; ``meaning`` says what ``dataset`` stands for."""
    (site / "style.css").write_text(STYLE)
    _write(site / "index.html", _root_page(model, layers, dataset, meaning))
    for layer in layers:
        folder = site / "layers" / layer.name
        _write(folder / "index.html", _layer_page(model, layer))
        if layer.atlas:
            _write(folder / "atlas.html", _atlas_page(model, layer, dataset))
        for channel in range(layer.channels):
            values = {name: _patch_values(folder / f"{channel:04d}" / f"{name}.json") for name in ("top", "bottom")}
            _write(folder / f"{channel:04d}.html", _unit_page(model, layer, channel, diverse, dataset, photo, values))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(text)
    temporary.replace(path)


def _patch_values(path: Path) -> list[float]:
    """The activations under a unit's dataset patches, best first (written beside their picture)."""
    return json.loads(path.read_text())["values"] if path.is_file() else []


def _page(title: str, crumbs: list[tuple[str, str]], body: str, style: str) -> str:
    trail = " › ".join(f'<a href="{href}">{html.escape(text)}</a>' if href else html.escape(text)
                       for text, href in crumbs)
    explorer = style.replace("style.css", "") + "../"  # the site is served at /microscope/ by convscope serve
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="stylesheet" href="{style}"></head>\n<body><header><nav><a href="{explorer}" '
            'title="when the site is served by convscope serve --microscope">back to the explorer</a></nav>'
            f"<h1>{trail}</h1></header>\n<main>\n{body}\n</main></body></html>\n")


def _root_page(model: str, layers: list[LayerPages], dataset: str | None, meaning: str) -> str:
    shown = ["what each responds to (feature visualization)", "a DeepDream"]
    if dataset:
        shown[1:1] = [f"its top and bottom images of {html.escape(dataset)}"
                      + (f" ({html.escape(meaning)})" if meaning else "")]
    atlases = "; and each layer's activation atlas" if any(layer.atlas for layer in layers) else ""
    parts = [f'<p class="hint">Every unit of {len(layers)} layer(s) of {html.escape(model)}: {", ".join(shown)}'
             f"{atlases}. Click a layer, then a unit.</p>"]
    for layer in layers:
        href = f"layers/{quote(layer.name)}/"
        thumbs = "".join(f'<a href="{href}{c:04d}.html"><img src="{href}{c:04d}/positive.png" alt="unit {c}">{c}</a>'
                         for c in range(min(INDEXED, layer.channels)))
        atlas = f' · <a href="{href}atlas.html">activation atlas</a>' if layer.atlas else ""
        more = (f'<a href="{href}index.html">units 0-{INDEXED - 1} of {layer.channels} shown here; all '
                f'{layer.channels} ›</a>' if layer.channels > INDEXED else "")
        parts.append(f'<section class="layer"><h2><a href="{href}index.html">{html.escape(layer.name)}</a> '
                     f"· {layer.channels} units{_field(layer)}{atlas}</h2>"
                     f'<div class="units">{thumbs}{more}</div></section>')
    return _page(f"microscope: {model}", [(f"microscope: {model}", "")], "\n".join(parts), "style.css")


def _layer_page(model: str, layer: LayerPages) -> str:
    thumbs = "".join(f'<a href="{c:04d}.html"><img src="{c:04d}/positive.png" alt="unit {c}">{c}</a>'
                     for c in range(layer.channels))
    atlas = ' Its <a href="atlas.html">activation atlas</a> maps what the layer represents.' if layer.atlas else ""
    body = (f'<p class="hint">{layer.channels} units{_field(layer)}; each thumbnail is the image that excites '
            f'the unit most. Click one for its page.{atlas}</p><div class="units">{thumbs}</div>')
    return _page(f"{layer.name}: {model}", [(f"microscope: {model}", "../../index.html"), (layer.name, "")], body,
                 "../../style.css")


def _atlas_page(model: str, layer: LayerPages, dataset: str | None) -> str:
    body = (f'<p class="hint">The activation atlas of {html.escape(layer.name)}: activation vectors of the layer at '
            f"random places of each image of {html.escape(dataset or 'the dataset')}, laid out by t-SNE so that "
            "similar vectors lie close, binned into a grid; each cell is the feature visualization of its vectors' "
            "mean (grey: too few vectors). Neighbouring cells show related things.</p>"
            '<figure><img src="atlas.png" alt="activation atlas" style="width: min(100%, 960px)"></figure>')
    return _page(f"{layer.name} atlas: {model}", [(f"microscope: {model}", "../../index.html"),
                                                  (layer.name, "index.html"), ("activation atlas", "")],
                 body, "../../style.css")


def _unit_page(model: str, layer: LayerPages, channel: int, diverse: int, dataset: str | None, photo: str,
               values: dict[str, list[float]]) -> str:
    unit = f"{channel:04d}"
    figures = [("positive", "what excites it most"), ("negative", "what drives it lowest")]
    parts = [_figures("Feature visualization", unit, figures, side=layer.shown_side)]
    if diverse:
        parts.append(_figures("Diverse", unit, [(f"diverse-{k}", f"another image exciting it ({k})")
                                                for k in range(1, diverse + 1)], side=layer.shown_side))
    patches = [(name, f"{name} {'patches' if layer.field else 'images'} of {dataset}" +
                (f"; activations, {'highest' if name == 'top' else 'lowest'} first: "
                 f"{', '.join(f'{v:.3g}' for v in values[name])}" if values[name] else ""))
               for name, shown in (("top", layer.top), ("bottom", layer.bottom)) if shown]
    if patches:
        parts.append(_figures("Dataset examples", unit, patches, wide=True,
                              note="each patch is the receptive field of the unit's strongest position"
                              if layer.field else ""))
    parts.append(_figures("DeepDream", unit, [("dream", f"the {photo} photo, changed to excite it more")]))
    links = [f'<a href="{c:04d}.html">{label}</a>' for c, label in
             ((channel - 1, "‹ previous unit"), (channel + 1, "next unit ›")) if 0 <= c < layer.channels]
    body = f'<nav class="pager">{" ".join(links)}</nav>' + "\n".join(parts)
    return _page(f"{layer.name} unit {channel}: {model}",
                 [(f"microscope: {model}", "../../index.html"), (layer.name, "index.html"), (f"unit {channel}", "")],
                 body, "../../style.css")


def _figures(title: str, unit: str, figures: list[tuple[str, str]], *, wide: bool = False, note: str = "",
             side: int = 0) -> str:
    """A row of a unit's pictures; ``side``: shown at that many pixels, unblurred (a whole multiple)."""
    size = f' class="crisp" style="width: {side}px"' if side else ""
    caption = f' style="max-width: {side}px"' if side else ""
    shown = "".join(f'<figure class="{"wide" if wide else ""}"><img src="{unit}/{name}.png"{size} '
                    f'alt="{html.escape(text)}"><figcaption{caption}>{html.escape(text)}</figcaption></figure>'
                    for name, text in figures)
    hint = f'<p class="hint">{html.escape(note)}</p>' if note else ""
    return f'<h2>{html.escape(title)}</h2>{hint}<div class="row">{shown}</div>'


def _field(layer: LayerPages) -> str:
    return f"; each sees {layer.field}x{layer.field} input pixels" if layer.field else ""
