"""Suggestions in the product: embeddings, the suggest endpoint, initial masks, on-device decoding."""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from PIL import Image as PILImage

from annotations import consensus as consensus_service
from annotations import services as annotation_services
from annotations.io.samples import sample_images
from annotations.models import Annotation, GoldStandard
from inference import services
from inference.engine import rle
from inference.engine.medsam import prompt_arrays
from inference.models import ImageEmbedding
from tests.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(settings, medsam_model_dir):
    settings.CROWDSEG_MODEL_DIR = medsam_model_dir
    return services.model_manifest()


def png_of(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def brain_pixels() -> np.ndarray:
    return sample_images()[0]


@pytest.fixture(scope="session")
def brain_png(brain_pixels) -> bytes:
    return png_of(brain_pixels)


def import_png(dataset, data: bytes, name: str = "brain.png"):
    source = annotation_services.BytesSource(name=name, data=data)
    return annotation_services.images_import(dataset=dataset, sources=[source]).created[0]


@pytest.fixture
def task(dataset, brain_png):
    return import_png(dataset, brain_png).tasks.get()


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Embedding ids queued for the encoder; ``run_queued`` then does what a worker would."""
    from inference.tasks import embed_image

    sent: list[int] = []
    monkeypatch.setattr(embed_image, "delay", lambda embedding_id: sent.append(embedding_id))
    return sent


def run_queued(sent: list[int]) -> None:
    from inference.tasks import embed_image

    while sent:
        embed_image.apply(args=[sent.pop(0)]).get()


@pytest.fixture
def ready_task(task, model, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.embedding_request(image=task.image)
    assert len(queued) == 1
    run_queued(queued)
    assert ImageEmbedding.objects.get(image=task.image).status == ImageEmbedding.Status.READY
    return task


def brain_box(task) -> list[float]:
    """A box around the foreground (the head) of the test image, in pixels."""
    pixels = annotation_services.image_model_input(task.image)[:, :, 0] > 20
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def test_first_request_is_409_with_retry_after_and_queues_the_encoder(alice, task, model):
    r = client_for(alice).post(f"/api/v1/tasks/{task.pk}/suggest", {"box": [10, 10, 60, 60]}, format="json")
    assert r.status_code == 409
    assert r["Retry-After"] == str(services.EMBED_RETRY_AFTER_S)
    assert r.json()["error"]["code"] == "embedding_not_ready"
    assert ImageEmbedding.objects.get(image=task.image).status == ImageEmbedding.Status.PENDING


def test_409_then_200_once_the_embedding_is_computed(alice, task, model, queued, django_capture_on_commit_callbacks):
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/api/v1/tasks/{task.pk}/suggest", {"box": [10, 10, 60, 60]}, format="json")
    assert r.status_code == 409 and len(queued) == 1
    with django_capture_on_commit_callbacks(execute=True):  # asking again does not queue it twice
        client.post(f"/api/v1/tasks/{task.pk}/suggest", {"box": [10, 10, 60, 60]}, format="json")
    assert len(queued) == 1
    run_queued(queued)
    r = client.post(f"/api/v1/tasks/{task.pk}/suggest", {"box": brain_box(task)}, format="json")
    assert r.status_code == 200, r.content


def test_box_prompt_returns_a_mask_inside_the_box(alice, ready_task, model):
    box = brain_box(ready_task)
    r = client_for(alice).post(f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": box}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    mask = rle.decode(body["rle"], expected_size=(ready_task.image.height, ready_task.image.width))
    assert body["area"] == mask.sum() > 1000
    x0, y0, x1, y1 = (int(v) for v in box)
    inside = mask[y0:y1, x0:x1].sum()
    assert inside / mask.sum() > 0.95
    assert 0 <= body["predicted_iou"] <= 1.2
    assert body["model_version"] == model.version and body["source"] == "prompt"
    assert body["polygons"] and all(len(p) >= 6 for p in body["polygons"])
    assert "suggest;dur=" in r["Server-Timing"]


def test_prompts_on_an_image_reuse_its_decoder_context(alice, ready_task, model, settings, dataset, queued):
    """The first prompt on an image makes its context; later ones reuse it without touching the
    embedding; the cache keeps only the images prompted most recently."""
    services.context_cache.clear()
    client = client_for(alice)
    path = f"/api/v1/tasks/{ready_task.pk}/suggest"
    first = client.post(path, {"box": brain_box(ready_task)}, format="json").json()
    ImageEmbedding.objects.filter(image=ready_task.image).delete()  # a cached context needs no row
    again = client.post(path, {"box": brain_box(ready_task)}, format="json")
    assert again.status_code == 200 and again.json()["rle"] == first["rle"]
    assert services.context_cache.get((ready_task.image.pk, model.version, model.context.sha256)) is not None

    settings.CROWDSEG_DECODER_CONTEXT_CACHE = 1
    other = import_png(dataset, png_of(np.flipud(sample_images()[0])), name="flipped.png").tasks.get()
    services.embedding_compute(embedding_id=services.embedding_request(image=other.image).pk)
    assert client.post(f"/api/v1/tasks/{other.pk}/suggest", {"box": [5, 5, 60, 60]}, format="json").status_code == 200
    assert services.context_cache.get((ready_task.image.pk, model.version, model.context.sha256)) is None
    assert services.context_cache.get((other.image.pk, model.version, model.context.sha256)) is not None
    assert client.post(path, {"box": brain_box(ready_task)}, format="json").status_code == 409  # re-queued


def test_a_new_context_graph_for_the_same_model_version_makes_new_contexts(
    alice, ready_task, model, settings, tmp_path, monkeypatch
):
    """Contexts kept from one context graph are not fed to another export of the same model."""
    import shutil

    import onnx

    from inference.engine.medsam import MedSAMDecoder

    services.context_cache.clear()
    client = client_for(alice)
    path, box = f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": brain_box(ready_task)}
    assert client.post(path, box, format="json").status_code == 200
    copy = tmp_path / "re-exported"
    shutil.copytree(model.model_dir, copy)
    graph = onnx.load(str(copy / "context.onnx"))
    graph.doc_string = "exported again"
    onnx.save(graph, str(copy / "context.onnx"))
    raw = (copy / "context.onnx").read_bytes()
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["context"].update(sha256=hashlib.sha256(raw).hexdigest(), bytes=len(raw))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    settings.CROWDSEG_MODEL_DIR = copy
    assert services.model_manifest().version == model.version  # same encoder: embeddings still valid
    made = []
    original = MedSAMDecoder.context
    monkeypatch.setattr(MedSAMDecoder, "context", lambda self, *args: made.append(1) or original(self, *args))
    assert client.post(path, box, format="json").status_code == 200
    assert client.post(path, box, format="json").status_code == 200
    assert made == [1]


def test_points_refine_a_box(alice, ready_task, model):
    box = brain_box(ready_task)
    centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    r = client_for(alice).post(
        f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": box, "points": [centre], "labels": [1]}, format="json"
    )
    assert r.status_code == 200, r.content
    assert r.json()["area"] > 0


@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ({}, "nothing"),
        ({"box": [50, 50, 10, 10]}, "box"),
        ({"box": [10, 10, 10, 40]}, "box"),
        ({"box": [-50, 10, 40, 40]}, "outside"),
        ({"box": [10, 10, 5000, 40]}, "outside"),
        ({"points": [[10, 10]], "labels": [1, 0]}, "label"),
        ({"points": [[10, 10]]}, "label"),
        ({"points": [[10, 10]], "labels": [7]}, "label"),
        ({"points": [[10, 99999]], "labels": [1]}, "outside"),
        ({"points": [[10, 10]] * 40, "labels": [1] * 40}, "points"),
    ],
)
def test_it_rejects_a_bad_prompt(alice, ready_task, model, prompt, fragment):
    r = client_for(alice).post(f"/api/v1/tasks/{ready_task.pk}/suggest", prompt, format="json")
    assert r.status_code == 400, r.content
    assert fragment in r.json()["error"]["message"].lower()


def test_it_rejects_malformed_json_fields(alice, ready_task, model):
    r = client_for(alice).post(f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": ["a", 1, 2, 3]}, format="json")
    assert r.status_code == 400
    assert "box" in r.json()["error"]["fields"]


def test_outsiders_get_no_suggestions(charlie, volunteer, ready_task, model):
    for user in (charlie, volunteer):
        r = client_for(user).post(f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": [1, 1, 20, 20]}, format="json")
        assert r.status_code == 404
        assert client_for(user).get(f"/api/v1/tasks/{ready_task.pk}/embedding").status_code == 404


def test_anonymous_requests_are_refused(ready_task):
    from rest_framework.test import APIClient

    api_client = APIClient()
    r = api_client.post(f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": [1, 1, 20, 20]}, format="json")
    assert r.status_code in (401, 403)


def test_it_answers_503_before_the_model_is_exported(alice, task, settings, tmp_path):
    settings.CROWDSEG_MODEL_DIR = tmp_path / "nothing-here"
    r = client_for(alice).post(f"/api/v1/tasks/{task.pk}/suggest", {"box": [1, 1, 20, 20]}, format="json")
    assert r.status_code == 503
    assert "export_medsam" in r.json()["error"]["message"]


def test_it_answers_503_for_a_model_an_older_crowdseg_exported(alice, task, settings, tmp_path, medsam_model_dir):
    old = tmp_path / "old-model"
    old.mkdir()
    manifest = json.loads((medsam_model_dir / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    settings.CROWDSEG_MODEL_DIR = old
    r = client_for(alice).post(f"/api/v1/tasks/{task.pk}/suggest", {"box": [1, 1, 20, 20]}, format="json")
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "outdated" in message and "export_medsam" in message


def test_suggestions_are_rate_limited_per_user(alice, ready_task, model, monkeypatch):
    from inference.api.views import SuggestThrottle

    monkeypatch.setattr(SuggestThrottle, "THROTTLE_RATES", {"suggest": "3/min"})
    client = client_for(alice)
    path = f"/api/v1/tasks/{ready_task.pk}/suggest"
    codes = [client.post(path, {"box": brain_box(ready_task)}, format="json").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_on_device_embedding_is_compact_and_close_to_the_full_one(alice, ready_task, model):
    client = client_for(alice)
    r = client.get(f"/api/v1/tasks/{ready_task.pk}/embedding")
    assert r.status_code == 200
    payload = r.content
    assert len(payload) < 1.1 * 2**20  # int8: about 1 MiB instead of 4 MiB of float32
    full = services.embedding_array(ImageEmbedding.objects.get(image=ready_task.image)).astype(np.float32)
    received = services.embedding_from_payload(payload)
    assert received.shape == full.shape
    assert np.abs(received - full).max() <= np.abs(full).max(axis=(1, 2)).max() / 127 + 1e-6
    assert client.get(f"/api/v1/tasks/{ready_task.pk}/embedding", HTTP_IF_NONE_MATCH=r["ETag"]).status_code == 304
    half = client.get(f"/api/v1/tasks/{ready_task.pk}/embedding?encoding=float16")
    assert np.allclose(services.embedding_from_payload(half.content), full, atol=1e-2)
    assert client.get(f"/api/v1/tasks/{ready_task.pk}/embedding?encoding=bits").status_code == 400


def test_clients_can_fetch_the_decoder_to_run_it_themselves(alice, ready_task, model):
    """The on-device flow: the two graphs and the int8 embedding, run as a phone would, give the
    server's mask."""
    client = client_for(alice)
    info = client.get("/api/v1/models/current").json()
    assert info["model_version"] == model.version
    assert info["low_res_size"] == list(model.low_res_size)  # which tokens a client may crop
    graphs = {}
    for name in ("context", "decoder"):
        r = client.get(info[f"{name}_url"])
        assert r.status_code == 200 and "immutable" in r["Cache-Control"]
        graphs[name] = b"".join(r.streaming_content)
        assert hashlib.sha256(graphs[name]).hexdigest() == info[f"{name}_sha256"]
        assert len(graphs[name]) == info[f"{name}_bytes"]
    assert client.get(f"/api/v1/models/decoders/{'0' * 64}.onnx").status_code == 404

    import onnxruntime as ort

    from inference.engine.medsam import CONTEXT_OUTPUTS, validate_prompt
    from inference.engine.transforms import mask_from_low_res

    context_graph, decoder_graph = (ort.InferenceSession(graphs[n]) for n in ("context", "decoder"))
    embedding = services.embedding_from_payload(client.get(f"/api/v1/tasks/{ready_task.pk}/embedding").content)
    context = dict(zip(CONTEXT_OUTPUTS, context_graph.run(None, {"image_embeddings": embedding[None]}), strict=True))
    size = (ready_task.image.height, ready_task.image.width)
    box = brain_box(ready_task)
    coords, labels = prompt_arrays(validate_prompt(original_size=size, box=box), model.preprocess)
    low_res, _ = decoder_graph.run(None, {**context, "point_coords": coords, "point_labels": labels})
    on_device = mask_from_low_res(low_res, size, model.preprocess)
    server = rle.decode(
        client.post(f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": box}, format="json").json()["rle"]
    )
    assert (on_device & server).sum() / (on_device | server).sum() > 0.97


def test_initial_mask_is_none_without_anything_to_go_on(alice, ready_task, model):
    assert client_for(alice).get(f"/api/v1/tasks/{ready_task.pk}/initial-mask").status_code == 204


def other_images(dataset, brain_pixels, count: int) -> list:
    images = []
    for seed in range(count):
        pixels = brain_pixels.copy()
        pixels[0, 0] = seed + 1  # another file
        images.append(import_png(dataset, png_of(pixels), name=f"o{seed}.png"))
    return images


def annotate(task, mask, *, people: int = 2) -> None:
    for i in range(people):
        Annotation.objects.create(
            task=task, annotator=UserFactory(), mask=rle.encode(mask), area=int(mask.sum()), client_key=f"{task.pk}-{i}"
        )


def test_initial_mask_from_where_the_crowd_usually_finds_the_class(alice, dataset, brain_pixels, ready_task, model):
    box = np.zeros((ready_task.image.height, ready_task.image.width), bool)
    x0, y0, x1, y1 = (int(v) for v in brain_box(ready_task))
    box[y0:y1, x0:x1] = True
    for other in other_images(dataset, brain_pixels, 3):  # three other images the crowd labelled
        annotate(other.tasks.get(), box)
    consensus_service.fusion_run(label_class=ready_task.label_class)
    r = client_for(alice).get(f"/api/v1/tasks/{ready_task.pk}/initial-mask")
    assert r.status_code == 200, r.content
    assert r.json()["source"] == "class_prior" and r.json()["area"] > 1000


def test_gold_standards_never_make_an_initial_mask(alice, dataset, brain_pixels, ready_task, model):
    gold = np.zeros((ready_task.image.height, ready_task.image.width), bool)
    x0, y0, x1, y1 = (int(v) for v in brain_box(ready_task))
    gold[y0:y1, x0:x1] = True
    for other in other_images(dataset, brain_pixels, 4):  # golds on four other images, and this one
        annotation_services.gold_standard_set(task=other.tasks.get(), mask=gold, created_by=None)
    annotation_services.gold_standard_set(task=ready_task, mask=gold, created_by=None)
    assert client_for(alice).get(f"/api/v1/tasks/{ready_task.pk}/initial-mask").status_code == 204


def test_a_gold_tasks_initial_mask_is_the_crowds_label_not_its_gold(alice, dataset, brain_pixels, ready_task, model):
    """After two players annotated a gold task, its initial mask is what their votes say, exactly
    what a task without a gold with the same votes gets; the gold is never handed out."""
    h, w = ready_task.image.height, ready_task.image.width
    gold = np.zeros((h, w), bool)
    gold[20:80, 20:90] = True
    ordinary = other_images(dataset, brain_pixels, 1)[0].tasks.get()
    annotation_services.gold_standard_set(task=ready_task, mask=gold, created_by=None)
    votes = [np.zeros((h, w), bool) for _ in range(2)]
    votes[0][24:84, 22:94] = True
    votes[1][18:70, 26:88] = True
    players = UserFactory.create_batch(2)
    for task in (ready_task, ordinary):  # the same two players draw the same on both
        for i, (player, vote) in enumerate(zip(players, votes, strict=True)):
            Annotation.objects.create(
                task=task, annotator=player, mask=rle.encode(vote), area=int(vote.sum()), client_key=f"{task.pk}-{i}"
            )
    consensus_service.fusion_run(label_class=ready_task.label_class)
    client = client_for(alice)
    on_gold = client.get(f"/api/v1/tasks/{ready_task.pk}/initial-mask").json()
    on_ordinary = client.get(f"/api/v1/tasks/{ordinary.pk}/initial-mask").json()
    assert on_gold["source"] == on_ordinary["source"] == "consensus"
    shown = rle.decode(on_gold["rle"])
    assert not np.array_equal(shown, gold) and shown.sum() != gold.sum()
    assert np.array_equal(shown, rle.decode(on_ordinary["rle"]))


def test_initial_mask_from_the_consensus_of_earlier_annotators(alice, ready_task, model):
    h, w = ready_task.image.height, ready_task.image.width
    masks = [np.zeros((h, w), bool) for _ in range(3)]
    masks[0][10:50, 10:50] = True
    masks[1][12:52, 10:50] = True
    masks[2][100:120, 100:120] = True  # the odd one out
    for i, mask in enumerate(masks):
        Annotation.objects.create(
            task=ready_task, annotator=UserFactory(), mask=rle.encode(mask), area=int(mask.sum()), client_key=f"k{i}"
        )
    consensus_service.fusion_run(label_class=ready_task.label_class)
    r = client_for(alice).get(f"/api/v1/tasks/{ready_task.pk}/initial-mask")
    assert r.json()["source"] == "consensus"
    consensus = rle.decode(r.json()["rle"])
    assert consensus[30, 30] and not consensus[110, 110]


def test_importing_queues_the_embedding_of_new_images(
    dataset, brain_png, model, settings, queued, django_capture_on_commit_callbacks
):
    settings.CROWDSEG_EMBED_ON_IMPORT = True
    with django_capture_on_commit_callbacks(execute=True):
        image = import_png(dataset, brain_png)
    assert len(queued) == 1
    run_queued(queued)
    embedding = ImageEmbedding.objects.get(image=image)
    assert embedding.status == ImageEmbedding.Status.READY and embedding.encode_ms is not None
    array = services.embedding_array(embedding)
    assert array.dtype == np.float16 and array.shape == tuple(model.embedding_shape)


def test_import_without_a_model_still_imports(
    dataset, brain_png, settings, tmp_path, queued, django_capture_on_commit_callbacks
):
    settings.CROWDSEG_EMBED_ON_IMPORT = True
    settings.CROWDSEG_MODEL_DIR = tmp_path / "none"
    with django_capture_on_commit_callbacks(execute=True):
        import_png(dataset, brain_png)
    assert not ImageEmbedding.objects.exists() and not queued


def test_computing_twice_is_harmless_and_a_stale_claim_is_taken_over(task, model):
    embedding = services.embedding_request(image=task.image)
    services.embedding_compute(embedding_id=embedding.pk)
    first = ImageEmbedding.objects.get(pk=embedding.pk)
    services.embedding_compute(embedding_id=embedding.pk)  # a duplicate delivery: nothing happens
    assert ImageEmbedding.objects.get(pk=embedding.pk).updated_at == first.updated_at
    # A worker died while RUNNING: after the stale period another run takes over.
    ImageEmbedding.objects.filter(pk=embedding.pk).update(
        status=ImageEmbedding.Status.RUNNING, updated_at=timezone.now() - timedelta(hours=1)
    )
    assert services.embedding_compute(embedding_id=embedding.pk).status == ImageEmbedding.Status.READY


def test_embed_images_command_fills_in_missing_embeddings(dataset, brain_png, model):
    image = import_png(dataset, brain_png)
    out = io.StringIO()
    call_command("embed_images", "--dataset", dataset.name, stdout=out, stderr=io.StringIO())
    assert "1 embeddings computed, 0 failed" in out.getvalue()
    assert ImageEmbedding.objects.get(image=image).status == ImageEmbedding.Status.READY
    out = io.StringIO()
    call_command("embed_images", stdout=out, stderr=io.StringIO())
    assert "0 embeddings computed" in out.getvalue()


def test_export_command_reuses_a_complete_export(medsam_model_dir, model):
    out = io.StringIO()
    call_command("export_medsam", "--out", str(medsam_model_dir), stdout=out)
    assert f"model {model.version} already exported" in out.getvalue()


def test_export_command_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(CommandError, match="no such checkpoint"):
        call_command("export_medsam", "--out", str(tmp_path / "m"), "--checkpoint", str(tmp_path / "nope.pth"))


def test_gold_answers_never_come_back_in_suggestions(alice, ready_task, model):
    gold = np.ones((ready_task.image.height, ready_task.image.width), bool)
    annotation_services.gold_standard_set(task=ready_task, mask=gold, created_by=alice)
    r = client_for(alice).post(f"/api/v1/tasks/{ready_task.pk}/suggest", {"box": [5, 5, 30, 30]}, format="json")
    assert r.json()["area"] < gold.sum() / 4  # the model's answer, not the gold one
    assert GoldStandard.objects.count() == 1


@pytest.mark.real_stack
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_computes_the_embedding(dataset, brain_png, model, settings, celery_worker_process):
    settings.CROWDSEG_EMBED_ON_IMPORT = True
    image = import_png(dataset, brain_png)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        embedding = ImageEmbedding.objects.filter(image=image).first()
        if embedding and embedding.status in (ImageEmbedding.Status.READY, ImageEmbedding.Status.FAILED):
            break
        time.sleep(0.2)
    assert embedding is not None and embedding.status == ImageEmbedding.Status.READY, embedding and embedding.error


def ws_communicator(headers=None):
    from channels.testing import WebsocketCommunicator

    from crowdseg.asgi import application

    return WebsocketCommunicator(
        application,
        "/ws/v1/play",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), *(headers or [])],
    )


@pytest.mark.django_db(transaction=True)
def test_suggestions_over_the_websocket_with_an_app_session_token(task, model):
    import asyncio

    services.embedding_compute(embedding_id=services.embedding_request(image=task.image).pk)
    token = app_login(task.label_class.dataset.owner).encode()
    box = brain_box(task)

    async def play():
        communicator = ws_communicator([(b"x-session-token", token)])
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "suggest", "id": "c1", "task": str(task.pk), "box": box})
        answer = await communicator.receive_json_from(timeout=20)
        await communicator.send_json_to({"type": "suggest", "id": "c2", "task": str(task.pk), "box": [9, 9, 1, 1]})
        error = await communicator.receive_json_from(timeout=20)
        await communicator.send_json_to({"type": "suggest", "id": "c3", "task": "nope", "box": box})
        bad_task = await communicator.receive_json_from(timeout=20)
        await communicator.disconnect()
        return answer, error, bad_task

    answer, error, bad_task = asyncio.run(play())
    assert answer["type"] == "suggestion" and answer["id"] == "c1" and answer["area"] > 1000
    assert error["type"] == "error" and error["id"] == "c2" and error["error"]["code"] == "invalid_prompt"
    assert bad_task["error"]["status"] == 400


@pytest.mark.django_db(transaction=True)
def test_websocket_refuses_anonymous_clients():
    assert ws_handshake() == (False, 4401)


def ws_handshake(headers=None) -> tuple[bool, int | None]:
    """(accepted, close code) of one handshake on ``ws/v1/play`` through the whole ASGI stack."""
    import asyncio

    async def connect():
        communicator = ws_communicator(headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()  # refused too: see tests/crowdseg/test_ws_subprotocol.py
        return connected, code

    return asyncio.run(connect())


def app_login(user) -> str:
    """An app client's session token from allauth headless's login endpoint."""
    from rest_framework.test import APIClient

    from tests.factories import PASSWORD

    login = APIClient().post(
        "/_allauth/app/v1/auth/login", {"username": user.username, "password": PASSWORD}, format="json"
    )
    return login.json()["meta"]["session_token"]


@pytest.mark.django_db(transaction=True)
def test_websocket_accepts_an_app_token_and_refuses_it_after_logout(alice):
    from rest_framework.test import APIClient

    token = app_login(alice)
    assert ws_handshake([(b"x-session-token", token.encode())]) == (True, None)

    logout = APIClient().delete("/_allauth/app/v1/auth/session", HTTP_X_SESSION_TOKEN=token)
    assert logout.status_code == 401  # allauth's answer to a completed logout
    accepted, _ = ws_handshake([(b"x-session-token", token.encode())])
    assert not accepted


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("token", [b"", b"not-a-session", b"\xff" * 40])
def test_websocket_refuses_an_invalid_session_token(token):
    accepted, _ = ws_handshake([(b"x-session-token", token)])
    assert not accepted


@pytest.mark.django_db(transaction=True)
def test_websocket_refuses_an_expired_session_token(alice):
    from django.contrib.sessions.models import Session
    from django.core.cache import cache

    token = app_login(alice)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    cache.clear()  # cached_db sessions: the cache would still hold it
    accepted, _ = ws_handshake([(b"x-session-token", token.encode())])
    assert not accepted


@pytest.mark.django_db(transaction=True)
def test_websocket_refuses_when_the_token_check_fails(alice, monkeypatch, caplog):
    from allauth.headless.contrib.rest_framework.authentication import XSessionTokenAuthentication

    token = app_login(alice)

    def broken(self, request):
        raise RuntimeError("session store down")

    monkeypatch.setattr(XSessionTokenAuthentication, "authenticate", broken)
    accepted, _ = ws_handshake([(b"x-session-token", token.encode())])
    assert not accepted
    assert "session token check failed" in caplog.text


@pytest.mark.real_stack
@pytest.mark.django_db(transaction=True)
def test_a_phone_gets_suggestions_over_a_real_socket_and_bad_tokens_get_403(task, model, daphne_server):
    """On the wire, through daphne, with a token from a real login: what a phone app sees."""
    import asyncio

    from bench._aio import HttpClient, WebSocket
    from tests.factories import PASSWORD

    services.embedding_compute(embedding_id=services.embedding_request(image=task.image).pk)
    host, port = daphne_server
    owner = task.label_class.dataset.owner
    origin = {"Origin": f"http://{host}"}

    async def play():
        http = HttpClient(host, port)
        status, body, _ = await http.request(
            "POST", "/_allauth/app/v1/auth/login", {"username": owner.username, "password": PASSWORD}
        )
        await http.close()
        assert status == 200, body
        socket = await WebSocket.open(
            host, port, "/ws/v1/play", {**origin, "X-Session-Token": body["meta"]["session_token"]}
        )
        await socket.send({"type": "suggest", "id": "c1", "task": str(task.pk), "box": brain_box(task)})
        answer = await asyncio.wait_for(socket.receive(), 30)
        await socket.close()
        refusals = []
        for token in ("not-a-session", ""):
            try:
                await WebSocket.open(host, port, "/ws/v1/play", {**origin, "X-Session-Token": token})
                refusals.append("accepted")
            except ConnectionError as refused:
                refusals.append(str(refused))
        return answer, refusals

    answer, refusals = asyncio.run(play())
    assert answer["type"] == "suggestion" and answer["id"] == "c1" and answer["area"] > 1000
    assert all(" 403 " in refusal for refusal in refusals), refusals


def test_the_request_path_never_imports_torch():
    import subprocess
    import sys

    script = (
        "import sys, django; django.setup()\n"
        "import crowdseg.urls, crowdseg.asgi, inference.services, inference.api.views, gamification.consumers\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "crowdseg.settings.test"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
