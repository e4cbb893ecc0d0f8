"""The explorer's JSON API: each endpoint against the library, each bad input a 4xx with a clear message."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from convscope.core.images import fit, load_image
from convscope.inspect.activations import activations
from convscope.inspect.predictions import classify
from convscope.inspect.top_patches import top_activations
from convscope.samples import sample_image
from tests.conftest import assert_unchanged, snapshot
from convscope.web.app import create_app
from convscope.web.explorer import Explorer
from tests.web.conftest import client_for, wait_for


def png_bytes(array: np.ndarray, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=kind)
    return buffer.getvalue()


def test_model_classes_and_layers(client, lite0):
    info = client.get("/api/model").json()
    assert info["name"] == "efficientnet_lite0" and info["input_size"] == [224, 224] and info["classes"] == 1000
    classes = client.get("/api/classes").json()
    assert classes[281] == {"index": 281, "label": lite0.labels.name(281)}
    layers = {layer["name"]: layer for layer in client.get("/api/layers").json()}
    assert layers["_blocks.5"]["shape"] == [80, 14, 14] and layers["_blocks.5"]["receptive_field"]["size"] == 83


def test_predictions_equal_the_library(client, cat_id, lite0):
    before = snapshot(lite0.net)
    got = client.get(f"/api/images/{cat_id}/predictions?top=3").json()
    expected = classify(lite0, fit(sample_image("cat"), 224), top=3)[0]
    assert [p["index"] for p in got] == [p.index for p in expected]
    assert got[0]["probability"] == pytest.approx(expected[0].probability, abs=1e-5)
    assert_unchanged(before, lite0.net)


def test_upload_is_sniffed_by_content(client, lite0):
    photo = (sample_image("coffee", size=224)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    reply = client.post("/api/images", content=png_bytes(photo, "JPEG"), headers={"content-type": "image/png"})
    assert reply.status_code == 201, reply.text
    image_id = reply.json()["id"]
    shown = Image.open(io.BytesIO(client.get(f"/api/images/{image_id}.png").content))
    assert shown.size == (224, 224)
    top = client.get(f"/api/images/{image_id}/predictions?top=1").json()[0]
    assert top["label"] == classify(lite0, sample_image("coffee", size=224))[0][0].label


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "empty"),
    (b"hello, not an image at all", 415, "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 400, "corrupt"),
    (b"GIF89a" + b"\x00" * 40, 415, "not an image"),
])
def test_bad_uploads(client, body, status, message):
    reply = client.post("/api/images", content=body)
    assert reply.status_code == status and message in reply.json()["detail"]


def test_uploads_over_the_byte_and_pixel_limits(lite0):
    with client_for(lite0, max_upload_bytes=10_000, max_upload_pixels=100 * 100) as small:
        noise = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
        reply = small.post("/api/images", content=png_bytes(noise))
        assert reply.status_code == 413 and "at most 10 KiB" in reply.json()["detail"]
        reply = small.post("/api/images", content=png_bytes(np.zeros((101, 101, 3), np.uint8)))
        assert reply.status_code == 413 and "101x101 pixels" in reply.json()["detail"]


def test_activation_layout_matches_the_library(client, cat_id, lite0):
    layout = client.get(f"/api/images/{cat_id}/activations", params={"layer": "_blocks.4"}).json()
    maps = activations(lite0, fit(sample_image("cat"), 224), "_blocks.4")
    assert layout["channels"] == maps.order()[:64].tolist() and layout["total_channels"] == 40
    grid = Image.open(io.BytesIO(client.get(f"/api/images/{cat_id}/activations.png",
                                            params={"layer": "_blocks.4"}).content))
    tile = (grid.width - layout["padding"]) / layout["columns"]
    assert tile == int(tile) and layout["rows"] * tile + layout["padding"] == grid.height
    overlay = client.get(f"/api/images/{cat_id}/channel.png", params={"layer": "_blocks.4", "channel": 3})
    assert overlay.headers["content-type"] == "image/png" and Image.open(io.BytesIO(overlay.content)).size == (224, 224)


@pytest.mark.parametrize("path, params, status, message", [
    ("activations", {"layer": "_blocks.44"}, 400, "unknown layer '_blocks.44'; closest: _blocks.4"),
    ("activations", {"layer": "_fc"}, 400, "not (C, h, w) maps"),
    ("channel.png", {"layer": "_blocks.4", "channel": 40}, 400, "out of range"),
    ("predictions", {"top": 0}, 422, "top: Input should be greater than or equal to 1"),
])
def test_bad_view_requests(client, cat_id, path, params, status, message):
    reply = client.get(f"/api/images/{cat_id}/{path}", params=params)
    assert reply.status_code == status and message in reply.json()["detail"], reply.text


def test_unknown_ids_are_404(client):
    assert client.get("/api/images/nope/predictions").status_code == 404
    assert "no job" in client.get("/api/jobs/nope").json()["detail"]
    assert client.delete("/api/jobs/nope").status_code == 404


@pytest.mark.parametrize("kind, body, status, message", [
    ("dream", "{not json", 422, "JSON decode error"),
    ("dream", {"image": "x", "layer": "_blocks.4", "steps": 999}, 422,
     "steps: Input should be less than or equal to 50"),
    ("dream", {"image": "x", "layer": "_blocks.4", "path": "/etc/passwd"}, 422, "path: Extra inputs are not permitted"),
    ("dream", {"image": "CAT", "layer": "_blks.4"}, 400, "unknown layer"),
    ("attribution", {"image": "CAT", "target": "expresso"}, 400, "unknown class 'expresso'"),
    ("attack", {"image": "CAT", "method": "magic"}, 422, "method: Input should be"),
    ("visualize", {"layer": "_blocks.4", "channel": 40}, 400, "out of range"),
    ("style", {"image": "CAT", "style": "cubism"}, 422, "style: Input should be"),
])
def test_bad_job_requests(client, cat_id, kind, body, status, message):
    payload = body if isinstance(body, str) else json.dumps(body).replace("CAT", cat_id)
    reply = client.post(f"/api/jobs/{kind}", content=payload, headers={"content-type": "application/json"})
    assert reply.status_code == status and message in reply.json()["detail"], reply.text


def test_foreign_host_and_origin_are_refused(client):
    assert client.get("/api/model", headers={"host": "attacker.example"}).status_code == 403
    reply = client.get("/api/model", headers={"origin": "http://attacker.example"})
    assert reply.status_code == 403 and "origin" in reply.json()["detail"]
    assert client.get("/api/model", headers={"origin": "http://localhost:8000"}).status_code == 200
    assert client.get("/api/model", headers={"host": "localhost:8000"}).status_code == 200


def test_dream_job_streams_frames_and_finishes(client, cat_id):
    job = client.post("/api/jobs/dream", json={"image": cat_id, "layer": "_blocks.4", "octaves": 2, "steps": 3,
                                               "size": 96}).json()
    events = client.get(f"/api/jobs/{job['id']}/events").text  # streams until the job has finished
    states = [json.loads(line[6:])["state"] for line in events.splitlines() if line.startswith("data: ")]
    assert states[-1] == "done" and "running" in states
    status = wait_for(client, job)
    assert status["frames"] >= 3 and status["progress"] == 1.0
    first = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/frame.png?number=0").content))
    last = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/frame.png").content))
    assert first.size != last.size or np.asarray(first).tolist() != np.asarray(last).tolist()
    assert client.get(f"/api/jobs/{job['id']}/frame.png?number=999").status_code == 404


def test_attribution_and_attack_jobs(client, cat_id):
    finished = []
    for kind, body in [("attribution", {"method": "gradcam", "target": "tabby"}),
                       ("attribution", {"method": "occlusion"}),
                       ("attack", {"method": "fgsm", "eps": 8 / 255})]:
        job = client.post(f"/api/jobs/{kind}", json={"image": cat_id, **body}).json()
        status = wait_for(client, job)
        assert status["state"] == "done" and status["progress"] == 1.0, status
        assert Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/frame.png").content)).width > 224
        finished.append(status)
    grad_cam = finished[0]
    assert grad_cam["name"].startswith("attribution-gradcam-tabby-") and grad_cam["name"].endswith(grad_cam["id"][:6])

    ids = ",".join(status["id"] for status in finished)  # "download all": every picture, array and settings
    packed = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/archive.zip?ids={ids}").content))
    names = set(packed.namelist())
    for status in finished:
        assert {f"{status['name']}.png", f"{status['name']}.json"} <= names
        assert packed.read(f"{status['name']}.png") == client.get(f"/api/jobs/{status['id']}/frame.png").content
        settings = json.loads(packed.read(f"{status['name']}.json"))
        assert settings["caption"] == status["caption"] and settings["kind"] == status["kind"]
    assert json.loads(packed.read(f"{grad_cam['name']}.json"))["settings"]["target"] == "tabby"
    assert np.load(io.BytesIO(packed.read(f"{grad_cam['name']}.npy"))).shape == (224, 224)
    assert client.get("/api/jobs/archive.zip?ids=nosuchjob").status_code == 404
    assert client.get("/api/jobs/archive.zip?ids=../../etc").status_code == 422


def test_attribution_with_its_deletion_and_insertion_curves(client, cat_id):
    plain, curves = (client.post("/api/jobs/attribution", json={"image": cat_id, "method": "gradcam", **extra}).json()
                     for extra in ({}, {"curves": True}))
    widths = []
    for job in (plain, curves):
        assert wait_for(client, job)["state"] == "done"
        widths.append(Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/frame.png").content)).width)
    assert widths[1] >= widths[0] + 250  # the map, then the curves beside it


def test_cancel_stops_a_running_job(client, cat_id):
    job = client.post("/api/jobs/dream", json={"image": cat_id, "layer": "_blocks.9", "octaves": 6, "steps": 50,
                                               "size": 512}).json()
    wait_for(client, job, states=("running",))
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200
    status = wait_for(client, job, seconds=30)
    assert status["state"] == "cancelled" and status["message"] == "cancelled"


def test_a_full_queue_answers_429_and_jobs_have_a_time_limit(lite0):
    with client_for(lite0, workers=1, queue=1, job_seconds=1.0) as small:
        image = small.post("/api/images/sample/cat").json()["id"]
        body = {"image": image, "layer": "_blocks.9", "octaves": 6, "steps": 50, "size": 512}
        first = small.post("/api/jobs/dream", json=body).json()
        wait_for(small, first, states=("running",))
        second = small.post("/api/jobs/dream", json=body)
        third = small.post("/api/jobs/dream", json=body)
        assert second.status_code == 202 and third.status_code == 429 and "busy" in third.json()["detail"]
        assert "time limit of 1 s" in wait_for(small, first, seconds=30)["message"]
        small.delete(f"/api/jobs/{second.json()['id']}")


def test_channel_visualizations_are_cached(client):
    body = {"layer": "_blocks.4", "channel": 2, "steps": 8, "size": 48}
    first = client.post("/api/jobs/visualize", json=body).json()
    assert wait_for(client, first)["state"] == "done"
    assert client.post("/api/jobs/visualize", json=body).json()["id"] == first["id"]


def test_top_patches_from_an_index(lite0, tmp_path):
    from convscope.data.datasets import open_dataset
    photos = open_dataset("photos:6")
    top_activations(lite0, photos, tmp_path, layer="_blocks.3", channels=[0, 1], k=2, progress=False).save(
        tmp_path, photos)
    with client_for(lite0, index=tmp_path) as indexed:
        assert indexed.get("/api/model").json()["top_activations"] == {"layer": "_blocks.3", "channels": [0, 1], "k": 2}
        assert indexed.get("/api/top/1.png").content == (tmp_path / "channels" / "0001.png").read_bytes()
        assert "not in the index" in indexed.get("/api/top/7.png").json()["detail"]


def test_the_page_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "convscope" in page.text and "default-src 'self'" in \
        page.headers["content-security-policy"]
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")  # no external assets
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/docs").status_code == 404 and client.get("/docs").status_code == 404  # CDN pages
    spec = client.get("/api/openapi.json").json()
    assert {"/api/images", "/api/jobs/dream", "/api/jobs/{job_id}/events"} <= set(spec["paths"])


def test_the_served_model_is_not_changed(client, cat_id, lite0):
    before = snapshot(lite0.net)
    client.get(f"/api/images/{cat_id}/activations", params={"layer": "_blocks.6"})
    job = client.post("/api/jobs/attribution", json={"image": cat_id, "method": "guided"}).json()
    wait_for(client, job)
    assert_unchanged(before, lite0.net)


def test_several_models_each_at_their_own_path(lite0, digits):
    explorers = [Explorer(lite0), Explorer(digits)]
    with TestClient(create_app(explorers), base_url="http://127.0.0.1:8000") as client:
        models = client.get("/api/models").json()
        assert models == [{"name": lite0.name, "path": "/models/0/"}, {"name": digits.name, "path": "/models/1/"}]
        assert client.get("/models/1/api/model").json()["name"] == digits.name
        assert client.get("/models/0/api/model").json()["name"] == lite0.name
        assert 'src="static/app.js"' in client.get("/models/1/").text
        assert client.get("/models/1/static/app.js").status_code == 200
        pixels = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
        key = client.post("/models/1/api/images", content=png_bytes(pixels)).json()["id"]
        predictions = client.get(f"/models/1/api/images/{key}/predictions?top=3").json()
        expected = classify(digits, fit(load_image(pixels), digits.input_size), top=3)[0]
        assert [p["index"] for p in predictions] == [p.index for p in expected]
        assert client.get(f"/api/images/{key}/predictions").status_code == 404  # each model keeps its own images


def _scene_upload(client, seed: int) -> tuple[str, torch.Tensor]:
    """Uploads a shapes scene as a PNG: its id, and the image as the model sees it ``(1, 3, 224, 224)``."""
    from convscope.data.scenes import scene

    pixels = (scene(seed).image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    key = client.post("/api/images", content=png_bytes(pixels)).json()["id"]
    return key, fit(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, (224, 224))


def test_a_segmenter_lists_its_regions_and_explains_one():
    import convscope as cs

    segmenter = cs.load_model("shapes_segmenter", device="cpu")
    with client_for(segmenter) as client:
        info = client.get("/api/model").json()
        assert (info["task"], info["answers"], info["default_target"]) == ("segmentation", "Regions",
                                                                           "the largest region")
        key, x = _scene_upload(client, 200_101)
        regions = client.get(f"/api/images/{key}/predictions").json()
        with torch.no_grad():
            counts = torch.bincount(segmenter(x).argmax(1).flatten(), minlength=4).float()
        assert [r["index"] for r in regions] == [int(i) for i in counts.argsort(descending=True) if counts[i] > 0]
        assert [r["share"] for r in regions] == pytest.approx([float(counts[r["index"]] / counts.sum()) for r in regions])
        shape = next(r for r in regions if r["index"] != 0)
        assert shape["target"] == f"region:{shape['index']}"
        job = client.post("/api/jobs/attribution", json={"image": key, "method": "gradcam", "target": shape["target"]})
        status = wait_for(client, job.json())
        assert status["state"] == "done" and status["caption"].startswith("gradcam at ")
        assert f" of {shape['label']} over its predicted pixels" in status["caption"]
        for typed, reason in [("region:1@/etc/passwd", "names a file"), ("similar:/etc/passwd", "names a file"),
                              ("region:9", "out of range"), ("box:0", "not a detector")]:
            refused = client.post("/api/jobs/attribution", json={"image": key, "target": typed})
            assert refused.status_code == 400 and reason in refused.json()["detail"], typed


def test_a_detectors_boxes_are_the_librarys():
    import convscope as cs
    from convscope.inspect.detections import detect

    detector = cs.load_model("shapes_detector", device="cpu")
    with client_for(detector) as client:
        key, x = _scene_upload(client, 200_102)
        listed = client.get(f"/api/images/{key}/predictions").json()
        found = detect(detector, x)[0]
        assert [(b["label"], b["target"]) for b in listed] == [(d.label, f"box:{k}") for k, d in enumerate(found)]
        assert np.allclose([b["box"] for b in listed], [d.box for d in found], atol=0.05)
        refused = client.post("/api/jobs/attribution", json={"image": key, "target": "tabby"})
        assert refused.status_code == 400 and "box:K" in refused.json()["detail"]
