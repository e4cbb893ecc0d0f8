"""What the web explorer serves, without HTTP: the model, the images, cached views and the jobs."""

from __future__ import annotations

import base64
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from convscope.attribute.rollout import attention_maps
from convscope.attribute.saliency import TRANSFORMER_METHODS
from convscope.attribute.targets import objective_for, task_of
from convscope.core.images import fit
from convscope.core.layers import resolve
from convscope.core.render import Picture, picture
from convscope.core.summary import LayerInfo, list_layers
from convscope.errors import ConvscopeError, unknown_choice
from convscope.inspect.activations import Activations, activations
from convscope.inspect.predictions import probabilities
from convscope.inspect.top_patches import TopActivations, load_top_activations
from convscope.models.model import Model
from convscope.web.answers import answers, check_typed_target
from convscope.web.batcher import Batcher
from convscope.web.jobs import JobQueue
from convscope.web.store import KEEP_SIDE, ImageStore
from convscope.web.tasks import ATTRIBUTIONS
from convscope.web.uploads import decode_upload


#: Channels on one page of the activation grid.
PAGE = 64
#: The most pixels of a live camera frame (the page sends the model's input size).
LIVE_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Limits of the server.

    Attributes:
        max_upload_bytes: largest upload (20 MiB).
        max_upload_pixels: largest image, in pixels (40 megapixels).
        max_decode_bytes: the most memory one image may take to decode (256 MiB).
        decodes: images decoded at once (more wait their turn).
        max_json_bytes: largest body of any other request (64 KiB).
        body_seconds: time allowed for a request body to arrive.
        workers: heavy jobs running at once; queue: jobs waiting; job_seconds: each job's limit.
        images: images kept in memory (least recently used dropped first).
    """

    max_upload_bytes: int = 20 * 2**20
    max_upload_pixels: int = 40_000_000
    max_decode_bytes: int = 256 * 2**20
    decodes: int = 2
    max_json_bytes: int = 64 * 2**10
    body_seconds: float = 30.0
    workers: int = 2
    queue: int = 4
    job_seconds: float = 300.0
    images: int = 64


class Explorer:
    """The model and everything the page asks about it; light views run one at a time on it."""

    def __init__(self, model: Model, *, index: str | Path | None = None, microscope: str | Path | None = None,
                 settings: Settings = Settings()) -> None:
        self.model, self.settings = model, settings
        self.layers: list[LayerInfo] = list_layers(model)
        blank = torch.zeros(1, model.channels, *model.input_size, device=model.device)
        #: classification, multi-label, detection, segmentation, regression or embedding.
        self.task = task_of(model, blank)
        #: The attribution methods the page offers: attention rollout only for a network with attention.
        self.attributions = [m for m in ATTRIBUTIONS if m not in TRANSFORMER_METHODS or attention_maps(model, blank)]
        self.store = ImageStore(settings.images)
        self.jobs = JobQueue(model, workers=settings.workers, capacity=settings.queue, seconds=settings.job_seconds)
        self.index_folder = Path(index) if index else None
        self.top: TopActivations | None = load_top_activations(index) if index else None
        self.visualizations: dict[tuple, str] = {}
        #: A site written by ``convscope microscope`` for this model, served under /microscope/.
        self.microscope = Path(microscope) if microscope else None
        self._lock = threading.Lock()
        self._maps: OrderedDict[tuple[str, str], Activations] = OrderedDict()
        self._classifier = Batcher(self._probabilities)
        self._decoding = threading.BoundedSemaphore(settings.decodes)

    def open_upload(self, data: bytes) -> str:
        """Decodes an uploaded file (a few at a time, each within the memory budget) and keeps it;
        returns its image id."""
        with self._decoding:
            image = decode_upload(data, max_pixels=self.settings.max_upload_pixels,
                                  max_bytes=self.settings.max_decode_bytes, side=KEEP_SIDE)
        return self.store.add(image)

    def fitted(self, image_id: str) -> torch.Tensor:
        """Image ``image_id`` at the model's input size, ``(1, 3, H, W)``."""
        return fit(self.store.get(image_id), self.model.input_size)

    def predictions(self, image_id: str, top: int) -> list[dict]:
        """What the model answers for the image (:func:`~convscope.web.answers.answers`): its ``top``
        classes, its boxes or regions; concurrent requests share batched forward passes."""
        return self._answers(self.fitted(image_id), top)

    def _answers(self, x: torch.Tensor, top: int) -> list[dict]:
        if self.task in ("classification", "multi-label"):
            return answers(self.model, self.task, x, top, self._classifier)
        with self._lock:
            return answers(self.model, self.task, x, top, self._classifier)

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with self._lock:
            return probabilities(self.model, x)

    def check_layer(self, layer: str) -> LayerInfo:
        """The layer's row of the table; an unknown name raises with the closest valid ones."""
        resolve(self.model.net, layer)
        for info in self.layers:
            if info.name == layer:
                return info
        raise unknown_choice("layer", layer, [info.name for info in self.layers])

    def check_channel(self, layer: str, channel: int) -> None:
        shape = self.check_layer(layer).map_shape
        count = shape[0] if shape else 0
        if not 0 <= channel < count:
            raise ConvscopeError(f"channel {channel} is out of range for layer {layer!r}; accepted: 0..{count - 1}")

    def check_class(self, target: str | None) -> None:
        if target is not None and self.model.labels is not None:
            self.model.labels.index(target)

    def check_target(self, target: str | None, image_id: str) -> None:
        """Raises, in one line, for a target the image cannot be explained for: an unknown class, a
        box the detector did not find, a region with no pixels, a form that names a file."""
        check_typed_target(target)
        with self._lock:
            objective_for(self.model, self.fitted(image_id).to(self.model.device), target)

    def maps(self, image_id: str, layer: str) -> Activations:
        """The layer's activations for the image (the last few are cached)."""
        info = self.check_layer(layer)
        if info.reading is None:
            raise ConvscopeError(f"layer {layer!r} outputs {info.shape}, not (C, h, w) maps; pick a convolutional "
                                 f"layer or a transformer block")
        key = (image_id, layer)
        x = self.fitted(image_id)
        with self._lock:
            if key not in self._maps:
                self._maps[key] = activations(self.model, x, layer)
                while len(self._maps) > 8:
                    self._maps.popitem(last=False)
            self._maps.move_to_end(key)
            return self._maps[key]

    def activation_grid(self, image_id: str, layer: str, start: int = 0) -> tuple[Picture, dict]:
        """A page of the grid (:data:`PAGE` channels from rank ``start``, strongest first) and its
        layout: which channel each tile shows, in rows of ``columns``, and the gray scale's ends."""
        return _grid_page(self.maps(image_id, layer), start)

    def live(self, data: bytes, layer: str | None = None, channel: int | None = None, start: int = 0) -> dict:
        """One camera frame (image file bytes) at once: its top 5 and, given a layer, that layer's
        grid page and the channel's map, the pictures as ``data:`` URLs."""
        with self._decoding:
            image = decode_upload(data, max_pixels=LIVE_PIXELS, max_bytes=4 * LIVE_PIXELS, side=KEEP_SIDE)
        x = fit(image, self.model.input_size)
        reply = {"predictions": self._answers(x, 5)}
        if layer is None:
            return reply
        self.check_layer(layer)
        with self._lock:
            maps = activations(self.model, x, layer)
        shown, layout = _grid_page(maps, start)
        reply.update(grid=_data_url(shown), layout=layout)
        if channel is not None:
            self.check_channel(layer, channel)
            reply["channel"] = _data_url(maps.overlay(channel))
        return reply

    def channel_overlay(self, image_id: str, layer: str, channel: int) -> Picture:
        return self.maps(image_id, layer).overlay(channel)

    def image_picture(self, image_id: str) -> Picture:
        return picture(self.store.get(image_id)[0])

    def top_patches(self, channel: int) -> Path:
        """The picture file of one channel's top patches from the ``--index`` folder."""
        if self.top is None:
            raise ConvscopeError("no top-activations index was given (convscope serve --index DIR)")
        if channel not in set(self.top.channels.tolist()):
            raise ConvscopeError(f"channel {channel} is not in the index of {self.top.layer}")
        return self.index_folder / "channels" / f"{int(channel):04d}.png"

    def microscope_layers(self) -> list[str]:
        """The layers that have pages in the microscope site."""
        if self.microscope is None:
            return []
        layers = (self.microscope / "layers").glob("*")
        return sorted(folder.name for folder in layers if (folder / "index.html").is_file())

    def close(self) -> None:
        self.jobs.close()


def _grid_page(maps: Activations, start: int) -> tuple[Picture, dict]:
    shown = maps.grid(max_channels=PAGE, start=start)
    channels = shown.numbers["channels"]
    columns = max(1, math.ceil(math.sqrt(len(channels))))
    return shown, {"layer": maps.layer, "channels": channels, "strength": shown.numbers["strength"],
                   "columns": columns, "rows": math.ceil(len(channels) / columns), "padding": 2,
                   "start": start, "page": PAGE, "total_channels": maps.maps.shape[1],
                   "low": shown.numbers["low"], "high": shown.numbers["high"], "caption": shown.caption}


def _data_url(shown: Picture) -> str:
    return "data:image/png;base64," + base64.b64encode(shown._repr_png_()).decode()
