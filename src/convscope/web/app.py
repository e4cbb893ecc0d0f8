"""The explorer's HTTP side: the JSON API under /api (OpenAPI at /api/openapi.json) and the page.

Endpoints that only read the model run in the server's thread pool; the heavy ones queue a job
and return its id at once (``POST /api/jobs/KIND``), whose progress and frames are read from
``/api/jobs/ID`` and streamed by ``/api/jobs/ID/events`` (server-sent events).
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from collections.abc import Sequence
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from convscope.errors import ConvscopeError, shorten
from convscope.samples import SAMPLES, STYLES, sample_image
from convscope.web import tasks
from convscope.web.answers import DEFAULT_TARGETS, TITLES
from convscope.web.explorer import Explorer
from convscope.web.guard import LOCAL_NAMES, SECURITY_HEADERS, HostGuard
from convscope.web.jobs import FINISHED, QueueFull, UnknownJob
from convscope.web.store import UnknownImage
from convscope.web.limits import BodyLimit
from convscope.web.uploads import UploadError

STATIC = resources.files("convscope.web") / "static"
#: Routes whose body is an image file; every other body is small JSON.
UPLOAD_ROUTES = ("/api/images", "/api/live")


def create_app(explorers: Explorer | Sequence[Explorer], *, hosts: tuple[str, ...] = LOCAL_NAMES) -> HostGuard:
    """The ASGI app serving one explorer per model (the FastAPI app behind body limits and a
    :class:`HostGuard`: requests whose Host or Origin is not one of ``hosts`` get 403).

    The first model is served at ``/``; every model ``k`` also at ``/models/k/`` (the page's
    model picker switches between them; ``/api/models`` lists them).
    """
    explorers = [explorers] if isinstance(explorers, Explorer) else list(explorers)
    models = [{"name": explorer.model.name, "path": f"/models/{k}/"} for k, explorer in enumerate(explorers)]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for explorer in explorers:
            explorer.close()

    app = _model_app(explorers[0], models, lifespan)
    for k, explorer in enumerate(explorers):
        app.mount(f"/models/{k}", _model_app(explorer, models))
    settings = explorers[0].settings
    bounded = BodyLimit(app, lambda path: settings.max_upload_bytes if path.endswith(UPLOAD_ROUTES) else
                        settings.max_json_bytes, seconds=settings.body_seconds)
    return HostGuard(bounded, hosts)


def _model_app(explorer: Explorer, models: list[dict], lifespan=None) -> FastAPI:
    # no /docs page: FastAPI's Swagger UI would load its scripts from a CDN
    app = FastAPI(title="convscope explorer", version="1", openapi_url="/api/openapi.json", docs_url=None,
                  redoc_url=None, lifespan=lifespan)
    app.state.explorer = explorer
    _errors(app)
    _light_routes(app, explorer)
    _job_routes(app, explorer)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    if explorer.microscope is not None:
        app.mount("/microscope", StaticFiles(directory=str(explorer.microscope), html=True), name="microscope")

    @app.get("/api/models", tags=["model"])
    def model_list() -> list[dict]:
        """The models this server was started with: name and the path of each one's page."""
        return models

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers=SECURITY_HEADERS)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k not in response.headers})
        return response
    return app


def _errors(app: FastAPI) -> None:
    def reply(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    app.add_exception_handler(UploadError, lambda request, error: reply(error.status, str(error)))
    app.add_exception_handler(UnknownImage, lambda request, error: reply(404, str(error)))
    app.add_exception_handler(UnknownJob, lambda request, error: reply(404, str(error)))
    app.add_exception_handler(QueueFull, lambda request, error: reply(429, str(error)))
    app.add_exception_handler(ConvscopeError, lambda request, error: reply(400, str(error)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = shorten(".".join(str(part) for part in first.get("loc", ())))
        more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
        return reply(422, f"{where}: {first.get('msg', 'invalid')}{more}")


Layer = Annotated[str, Query(max_length=200)]
Start = Annotated[int, Query(ge=0, le=1_000_000)]


def png(shown) -> Response:
    return Response(shown._repr_png_(), media_type="image/png", headers={"Cache-Control": "no-store"})


def _light_routes(app: FastAPI, explorer: Explorer) -> None:
    model = explorer.model

    @app.get("/api/model", tags=["model"])
    def model_info() -> dict:
        """The model's name, task, input size, device and number of classes; what its answers are
        called on the page and what an attribution explains when no target is given."""
        return {"name": model.name, "task": explorer.task, "answers": TITLES[explorer.task],
                "default_target": DEFAULT_TARGETS[explorer.task],
                "input_size": list(model.input_size), "device": str(model.device),
                "classes": len(model.labels) if model.labels else None, "samples": list(SAMPLES),
                "styles": list(STYLES), "attributions": explorer.attributions,
                "microscope": explorer.microscope_layers(),
                "top_activations": None if explorer.top is None else
                {"layer": explorer.top.layer, "channels": explorer.top.channels.tolist(),
                 "k": int(explorer.top.images.shape[1])}}

    @app.get("/api/classes", tags=["model"])
    def classes() -> list[dict]:
        """Every class: index and name."""
        names = model.labels.names if model.labels else ()
        return [{"index": i, "label": name} for i, name in enumerate(names)]

    @app.get("/api/layers", tags=["model"])
    def layers() -> list[dict]:
        """Every layer: name, type, output shape, parameters and receptive field (size, jump, start)."""
        return [{"name": info.name, "kind": info.kind, "shape": list(info.map_shape), "parameters": info.parameters,
                 "receptive_field": None if info.receptive_field is None or info.receptive_field.whole else
                 {"size": info.receptive_field.size[0], "jump": info.receptive_field.jump[0],
                  "start": info.receptive_field.start[0]}} for info in explorer.layers]

    @app.post("/api/images/sample/{name}", tags=["images"], status_code=201)
    def open_sample(name: str) -> dict:
        """Opens a bundled photo (cat, coffee, astronaut, rocket); returns its image id."""
        image = sample_image(name)
        return {"id": explorer.store.add(image), "width": image.shape[-1], "height": image.shape[-2]}

    @app.post("/api/images", tags=["images"], status_code=201)
    async def upload(request: Request) -> dict:
        """Uploads an image as the raw request body (JPEG, PNG, WebP, BMP or TIFF, sniffed from the
        bytes); returns its image id. Larger than the byte or pixel limit: 413."""
        data = await request.body()  # bounded in size and time by BodyLimit
        if not data:
            raise UploadError(400, "the upload is empty; send the image file as the request body")
        key = await asyncio.to_thread(explorer.open_upload, data)
        height, width = explorer.store.get(key).shape[-2:]
        return {"id": key, "width": width, "height": height}

    @app.post("/api/live", tags=["images"])
    async def live(request: Request, layer: Annotated[str | None, Query(max_length=200)] = None,
                   channel: Annotated[int | None, Query(ge=0, le=1_000_000)] = None, start: Start = 0) -> dict:
        """One camera frame (an image file as the body, at most 1 megapixel): the top 5 and, given a
        layer, its activation grid page and the channel's map as ``data:`` URLs."""
        data = await request.body()
        if not data:
            raise UploadError(400, "the frame is empty; send a JPEG or PNG as the request body")
        return await asyncio.to_thread(explorer.live, data, layer, channel, start)

    @app.get("/api/images/{image_id}.png", tags=["images"])
    def image(image_id: str) -> Response:
        return png(explorer.image_picture(image_id))

    @app.get("/api/images/{image_id}/predictions", tags=["images"])
    def predictions(image_id: str, top: Annotated[int, Query(ge=1, le=50)] = 5) -> list[dict]:
        """What the model answers, each with the ``target`` that explains it: the top classes (index,
        label, probability), a detector's boxes (label, score, box in input pixels) or a segmenter's
        regions (label, index, share of the pixels)."""
        return explorer.predictions(image_id, top)

    @app.get("/api/images/{image_id}/activations", tags=["activations"])
    def activation_layout(image_id: str, layer: Layer, start: Start = 0) -> dict:
        """Which channel each tile of ``activations.png`` shows (a page of 64 from rank ``start``,
        strongest first, ``columns`` per row) and the gray scale's ends (``low``, ``high``)."""
        return explorer.activation_grid(image_id, layer, start)[1]

    @app.get("/api/images/{image_id}/activations.png", tags=["activations"])
    def activation_grid(image_id: str, layer: Layer, start: Start = 0) -> Response:
        return png(explorer.activation_grid(image_id, layer, start)[0])

    @app.get("/api/images/{image_id}/channel.png", tags=["activations"])
    def channel_map(image_id: str, layer: Layer, channel: Annotated[int, Query(ge=0, le=1_000_000)]) -> Response:
        """One channel's activation map over the image (inferno colours: dark low, yellow high)."""
        return png(explorer.channel_overlay(image_id, layer, channel))

    @app.get("/api/images/{image_id}/channel", tags=["activations"])
    def channel_numbers(image_id: str, layer: Layer, channel: Annotated[int, Query(ge=0, le=1_000_000)]) -> dict:
        """The channel map's caption and the values at the colour scale's ends (``min``, ``max``)."""
        shown = explorer.channel_overlay(image_id, layer, channel)
        return {"caption": shown.caption, **shown.numbers}

    @app.get("/api/top/{channel}.png", tags=["activations"])
    def top_patches(channel: int) -> FileResponse:
        """The channel's top dataset patches, from the index given with ``--index``."""
        return FileResponse(str(explorer.top_patches(channel)), media_type="image/png")


def _job_routes(app: FastAPI, explorer: Explorer) -> None:
    jobs = explorer.jobs

    def queued(kind: str, recipe, request: BaseModel) -> JSONResponse:
        settings = request.model_dump(exclude={"image"})
        return JSONResponse(jobs.submit(kind, recipe, settings).status(), status_code=202)

    @app.post("/api/jobs/dream", tags=["jobs"], status_code=202)
    def dream(request: tasks.DreamRequest) -> JSONResponse:
        """DeepDream of the image at a layer (or one channel); frames after each few steps."""
        explorer.check_layer(request.layer)
        if request.channel is not None:
            explorer.check_channel(request.layer, request.channel)
        return queued("dream", partial(tasks.run_dream, request, explorer.store.get(request.image)), request)

    @app.post("/api/jobs/style", tags=["jobs"], status_code=202)
    def style(request: tasks.StyleRequest) -> JSONResponse:
        """Gatys style transfer of the image in a built-in style."""
        return queued("style", partial(tasks.run_style, request, explorer.store.get(request.image)), request)

    @app.post("/api/jobs/invert", tags=["jobs"], status_code=202)
    def invert(request: tasks.InvertRequest) -> JSONResponse:
        """Reconstruct the image from its code at a layer."""
        explorer.check_layer(request.layer)
        return queued("invert", partial(tasks.run_invert, request, explorer.store.get(request.image)), request)

    @app.post("/api/jobs/attack", tags=["jobs"], status_code=202)
    def attack(request: tasks.AttackRequest) -> JSONResponse:
        """An adversarial example: the original, the adversarial image and the change magnified."""
        explorer.check_class(request.target)
        return queued("attack", partial(tasks.run_attack, request, explorer.store.get(request.image)), request)

    @app.post("/api/jobs/attribution", tags=["jobs"], status_code=202)
    def attribution(request: tasks.AttributionRequest) -> JSONResponse:
        """A gradient map, Grad-CAM or occlusion of a target (a class, a box, a region; the model's
        answer when none is given)."""
        explorer.check_target(request.target, request.image)
        run = partial(tasks.run_attribution, request, explorer.store.get(request.image))
        return queued("attribution", run, request)

    @app.post("/api/jobs/visualize", tags=["jobs"], status_code=202)
    def visualize(request: tasks.VisualizeRequest) -> JSONResponse:
        """The image that excites one channel most; computed once, then served from the cache."""
        explorer.check_channel(request.layer, request.channel)
        key = (request.layer, request.channel, request.steps, request.size)
        cached = explorer.visualizations.get(key)
        try:
            if cached and jobs.get(cached).state not in ("failed", "cancelled"):
                return JSONResponse(jobs.get(cached).status(), status_code=202)
        except UnknownJob:
            pass
        reply = queued("visualize", partial(tasks.run_visualize, request), request)
        explorer.visualizations[key] = json.loads(reply.body)["id"]
        return reply

    @app.get("/api/jobs/archive.zip", tags=["jobs"])
    def archive(ids: Annotated[str, Query(max_length=32 * 13, pattern=r"^[A-Za-z0-9_,-]+$")]) -> Response:
        """The finished jobs ``ids`` (comma-separated, at most 32) in one ZIP file: each one's picture,
        the values behind it (``.npy``) and a JSON of its settings, caption and numbers, named by its
        tool, method, target and layer."""
        chosen = [jobs.get(key) for key in dict.fromkeys(ids.split(",")) if key]
        if not 0 < len(chosen) <= 32:
            return JSONResponse({"detail": "give 1 to 32 job ids, comma-separated"}, status_code=400)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as packed:
            for job in chosen:
                if job.state == "done":
                    job.archived(packed)
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="convscope-results.zip"'})

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def status(job_id: str) -> dict:
        """State (queued, running, done, failed, cancelled), progress 0..1, frames so far, message."""
        return jobs.get(job_id).status()

    @app.delete("/api/jobs/{job_id}", tags=["jobs"])
    def cancel(job_id: str) -> dict:
        """Cancels the job; it stops at its next frame."""
        return jobs.cancel(job_id).status()

    @app.get("/api/jobs/{job_id}/frame.png", tags=["jobs"])
    def frame(job_id: str, number: int = -1) -> Response:
        """Frame ``number`` (0 = first; -1 = latest, the result once done)."""
        try:
            data = jobs.get(job_id).frame(number)
        except KeyError:
            return JSONResponse({"detail": f"job {job_id} has no frame {number} (yet)"}, status_code=404)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/result.npy", tags=["jobs"])
    def result_array(job_id: str) -> Response:
        """The raw values behind the finished result (a map or an image) as a NumPy ``.npy`` file."""
        job = jobs.get(job_id)
        if job.array is None:
            return JSONResponse({"detail": f"job {job.id} has no array (it is {job.state})"}, status_code=404)
        return Response(job.array, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{job.kind}-{job.id}.npy"'})

    @app.get("/api/jobs/{job_id}/events", tags=["jobs"])
    async def events(job_id: str) -> StreamingResponse:
        """Server-sent events: the job's status each time it changes, until it has finished."""
        job = jobs.get(job_id)

        async def stream():
            last = None
            while True:
                now = job.status()
                if now != last:
                    yield f"data: {json.dumps(now)}\n\n"
                    last = now
                if now["state"] in FINISHED:
                    return
                await asyncio.sleep(0.1)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


