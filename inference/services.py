"""MedSAM in the product: embeddings per image, suggestions per prompt, initial masks.

The request path uses onnxruntime only (``inference.engine.medsam``); sessions are created once
per process and shared by every request (``InferenceSession.run`` is thread-safe).  The
decoder's per-image context is kept in memory for the images prompted most recently: a
volunteer sends several prompts per image, redrawing as the finger drags.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotations.models import FusedLabel, Image, Task
from annotations.services import image_model_input
from crowdseg.errors import Conflict, DomainError, Unavailable
from inference.engine import rle
from inference.engine.medsam import (
    ImageContext,
    Manifest,
    ManifestOutdated,
    MedSAMDecoder,
    MedSAMEncoder,
    dequantise_embedding,
    quantise_embedding,
    validate_prompt,
)

from .models import ImageEmbedding

logger = logging.getLogger(__name__)

EMBED_RETRY_AFTER_S = 2  # what a client waits before asking again while the encoder runs
STALE_RUNNING = timedelta(minutes=10)  # a RUNNING embedding this old lost its worker
MAX_ATTEMPTS = 3
CLASS_PRIOR_LABELS = 200  # a class prior is the median box of this many of the class's latest crowd labels ...
CLASS_PRIOR_MIN = 3  # ... and needs at least this many
CLASS_PRIOR_CACHE_S = 60  # one box per label class, recomputed at most this often
INITIAL_MASK_MEMORY_S = 24 * 3600  # how long a handed-out initial mask is recognised when handed back
CROWD_LABEL_MIN_VOTES = 2  # a fused label is handed out as an initial mask from this many votes on


class ModelUnavailable(Unavailable):
    code = "model_unavailable"


class EmbeddingNotReady(Conflict):
    code = "embedding_not_ready"


@dataclass(frozen=True)
class Suggestion:
    """A mask for a task: from a prompt, or with none (initial mask).

    mask: (H, W) bool at the image's native size. predicted_iou: the decoder's own estimate
    (None for consensus masks). source: "prompt", "class_prior" or "consensus".
    server_ms: milliseconds spent in this process, decoding included.
    """

    mask: np.ndarray
    predicted_iou: float | None
    model_version: str
    source: str
    server_ms: float

    @property
    def rle(self) -> dict:
        return rle.encode(self.mask)

    @property
    def polygons(self) -> list[list[float]]:
        return rle.to_polygons(self.mask)


class _Runtime:
    """The current model's manifest and sessions, loaded on first use in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._manifest: Manifest | None = None
        self._decoder: MedSAMDecoder | None = None
        self._encoder: MedSAMEncoder | None = None

    def _load(self) -> None:
        model_dir = Path(settings.CROWDSEG_MODEL_DIR)
        manifest_file = model_dir / "manifest.json"
        try:
            key = (str(model_dir), manifest_file.stat().st_mtime_ns)
        except FileNotFoundError:
            raise ModelUnavailable(
                f"no MedSAM model in {model_dir}: run `manage.py export_medsam`", code="model_unavailable"
            ) from None
        if key != self._key:
            try:
                self._manifest = Manifest.load(model_dir)
            except ManifestOutdated as exc:
                raise ModelUnavailable(
                    f"the MedSAM model in {model_dir} is outdated ({exc}): run `manage.py export_medsam`",
                    code="model_unavailable",
                ) from None
            self._decoder = self._encoder = None
            self._key = key

    def manifest(self) -> Manifest:
        with self._lock:
            self._load()
            assert self._manifest is not None
            return self._manifest

    def decoder(self) -> MedSAMDecoder:
        with self._lock:
            self._load()
            if self._decoder is None:
                self._decoder = MedSAMDecoder(self._manifest, threads=settings.CROWDSEG_ONNX_THREADS or None)
            return self._decoder

    def encoder(self) -> MedSAMEncoder:
        with self._lock:
            self._load()
            if self._encoder is None:
                self._encoder = MedSAMEncoder(self._manifest, threads=settings.CROWDSEG_ONNX_THREADS or None)
            return self._encoder


runtime = _Runtime()


# (image id, model version, context graph SHA-256): an image's embedding never changes for a model
# version once ready, and a context is only valid for the graph that made it.
ContextKey = tuple[uuid.UUID, str, str]


class _ContextCache:
    """Decoder contexts (``MedSAMDecoder.context``, about 20 MB each) of recently prompted images.

    A hit saves reading the embedding's row and file and running the context graph (a few
    milliseconds together).
    """

    def __init__(self) -> None:
        self._items: OrderedDict[ContextKey, ImageContext] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: ContextKey) -> ImageContext | None:
        with self._lock:
            context = self._items.get(key)
            if context is not None:
                self._items.move_to_end(key)
            return context

    def put(self, key: ContextKey, context: ImageContext) -> None:
        with self._lock:
            self._items[key] = context
            while len(self._items) > max(settings.CROWDSEG_DECODER_CONTEXT_CACHE, 1):
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


context_cache = _ContextCache()


def embedding_array(embedding: ImageEmbedding) -> np.ndarray:
    """The stored ``(256, 64, 64)`` float16 embedding of a READY row."""
    with embedding.file.open("rb") as fh:
        return np.load(io.BytesIO(fh.read()), allow_pickle=False)


def model_manifest() -> Manifest:
    """The model the server suggests with; ModelUnavailable (503) before it is exported."""
    return runtime.manifest()


def embedding_request(*, image: Image) -> ImageEmbedding:
    """The embedding of ``image`` for the current model, queued for computing if it is missing.

    Safe to call on every request: the task is queued once per missing embedding (and again
    for a failed one, up to MAX_ATTEMPTS).
    """
    from .tasks import embed_image

    version = model_manifest().version
    embedding, created = ImageEmbedding.objects.get_or_create(image=image, model_version=version)
    retry_failed = (
        embedding.status == ImageEmbedding.Status.FAILED
        and embedding.attempts < MAX_ATTEMPTS
        and ImageEmbedding.objects.filter(pk=embedding.pk, status=ImageEmbedding.Status.FAILED).update(
            status=ImageEmbedding.Status.PENDING
        )
        == 1
    )
    if created or retry_failed:
        transaction.on_commit(lambda: embed_image.delay(embedding.pk))
    return embedding


def embedding_compute(*, embedding_id: int) -> ImageEmbedding:
    """Run the encoder for one embedding row, if this caller wins the claim.

    Claims PENDING (or a RUNNING row gone stale) atomically, so a duplicate task does nothing.
    """
    stale = timezone.now() - STALE_RUNNING
    claimed = ImageEmbedding.objects.filter(pk=embedding_id, status=ImageEmbedding.Status.PENDING).update(
        status=ImageEmbedding.Status.RUNNING, updated_at=timezone.now()
    ) or ImageEmbedding.objects.filter(
        pk=embedding_id, status=ImageEmbedding.Status.RUNNING, updated_at__lt=stale
    ).update(updated_at=timezone.now())
    embedding = ImageEmbedding.objects.select_related("image").get(pk=embedding_id)
    if not claimed:
        return embedding
    embedding.attempts += 1
    try:
        manifest = model_manifest()
        if manifest.version != embedding.model_version:
            raise ModelUnavailable(f"model {embedding.model_version} is no longer the current model")
        started = time.perf_counter()
        array = runtime.encoder().embed(image_model_input(embedding.image))
        encode_ms = round((time.perf_counter() - started) * 1000)
    except Exception as exc:  # recorded on the row; embedding_request retries up to MAX_ATTEMPTS
        logger.exception("encoding image %s failed", embedding.image_id)
        embedding.status = ImageEmbedding.Status.FAILED
        embedding.error = f"{type(exc).__name__}: {exc}"[:2000]
        embedding.save(update_fields=["status", "error", "attempts", "updated_at"])
        return embedding
    buf = io.BytesIO()
    np.save(buf, array.astype(np.float16), allow_pickle=False)
    old_name = embedding.file.name
    embedding.file.save(
        f"{embedding.image.dataset_id}/{embedding.image_id}-{embedding.model_version}.npy",
        ContentFile(buf.getvalue()),
        save=False,
    )
    if old_name and old_name != embedding.file.name:
        embedding.file.storage.delete(old_name)
    embedding.status = ImageEmbedding.Status.READY
    embedding.error = ""
    embedding.encode_ms = encode_ms
    embedding.save()
    return embedding


def embedding_ready(*, image: Image) -> ImageEmbedding:
    """The READY embedding of ``image``, or EmbeddingNotReady (409, Retry-After) with it queued."""
    embedding = embedding_request(image=image)
    if embedding.status != ImageEmbedding.Status.READY:
        if embedding.status == ImageEmbedding.Status.FAILED and embedding.attempts >= MAX_ATTEMPTS:
            raise ModelUnavailable(f"the image could not be encoded: {embedding.error}", code="embedding_failed")
        raise EmbeddingNotReady(
            "the image is still being prepared for suggestions; ask again shortly",
            headers={"Retry-After": str(EMBED_RETRY_AFTER_S)},
        )
    return embedding


def suggestion_make(
    *,
    task: Task,
    box: list[float] | None = None,
    points: list[list[float]] | None = None,
    labels: list[int] | None = None,
) -> Suggestion:
    """MedSAM's mask for a box and/or points (image pixel coordinates) on ``task``'s image.

    Boxes are the primary prompt (MedSAM was trained on boxes); points refine a box.
    Raises DomainError (400) for an invalid prompt, EmbeddingNotReady (409) while the image is
    being encoded, ModelUnavailable (503) before the model is exported.
    """
    started = time.perf_counter()
    image = task.image
    try:
        prompt = validate_prompt(original_size=(image.height, image.width), box=box, points=points, labels=labels)
    except ValueError as exc:
        raise DomainError(f"invalid prompt: {exc}", code="invalid_prompt") from None
    decoder = runtime.decoder()
    prediction = decoder.predict(_image_context(image, decoder), (image.height, image.width), prompt)
    return Suggestion(
        mask=prediction.mask,
        predicted_iou=float(prediction.iou),
        model_version=decoder.manifest.version,
        source="prompt",
        server_ms=(time.perf_counter() - started) * 1000,
    )


def _image_context(image: Image, decoder: MedSAMDecoder) -> ImageContext:
    """The context of ``image`` for ``decoder`` (the current model's).

    From memory when the image was prompted recently; otherwise from its READY embedding
    (EmbeddingNotReady, 409, while it is being encoded).
    """
    key = (image.pk, decoder.manifest.version, decoder.manifest.context.sha256)
    context = context_cache.get(key)
    if context is None:
        context = decoder.context(embedding_array(embedding_ready(image=image)), (image.height, image.width))
        context_cache.put(key, context)
    return context


def class_prior_box(*, task: Task) -> list[float] | None:
    """Where this label class usually lies in this dataset, as a box on ``task``'s image.

    The median, in coordinates relative to image size, of the bounding boxes of the crowd's labels
    (fused labels of two or more votes, ``annotations.consensus``) of the class's
    ``CLASS_PRIOR_LABELS`` most recently fused tasks; None with fewer than ``CLASS_PRIOR_MIN``. The
    same relative box for every task of the class, from crowd labels only: no gold standard, the
    task's own or another's, ever enters it.
    """
    key = f"inference:class-prior:{task.label_class_id}"
    relative = cache.get(key)
    if relative is None:
        relative = _class_prior_relative(task.label_class_id) or []
        cache.set(key, relative, CLASS_PRIOR_CACHE_S)
    if not relative:
        return None
    x0, y0, x1, y1 = relative
    w, h = task.image.width, task.image.height
    return [float(x0 * w), float(y0 * h), float(x1 * w), float(y1 * h)]


def _class_prior_relative(label_class_id: int) -> list[float] | None:
    labels = (
        crowd_labels()
        .filter(task__label_class_id=label_class_id)
        .select_related("task__image")
        .order_by("-updated_at", "pk")[:CLASS_PRIOR_LABELS]
    )
    boxes = []
    for label in labels:
        bbox = _bbox(rle.decode(label.mask))
        if bbox is not None:
            h, w = label.task.image.height, label.task.image.width
            boxes.append([bbox[0] / w, bbox[1] / h, bbox[2] / w, bbox[3] / h])
    if len(boxes) < CLASS_PRIOR_MIN:
        return None
    return [float(v) for v in np.median(np.array(boxes), axis=0)]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """[x0, y0, x1, y1] with exclusive ends (pixel edges) of a mask's foreground, or None."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_digest(encoded: dict) -> str:
    """SHA-256 (hex) of a mask as ``rle.encode`` gives it: equal masks, equal digests."""
    return hashlib.sha256(json.dumps(encoded, sort_keys=True).encode()).hexdigest()


def _handed_out_key(task_id, digest: str) -> str:
    return f"inference:initial-mask:{task_id}:{digest}"


def initial_mask(*, task: Task) -> Suggestion | None:
    """A mask to show before the volunteer touches the screen, or None if there is nothing to go on.

    Computed the same way for every task, gold standard or not, and never from a gold mask: once
    two or more people have annotated the task, the crowd's fused label (``annotations.consensus``:
    on a gold task the votes' own label, not the gold); before that, MedSAM's answer to the box
    where the class usually lies (``class_prior_box``, from crowd labels). What it hands out is
    remembered for ``INITIAL_MASK_MEMORY_S`` (``initial_mask_handed_out``), so a submission that
    hands it back unchanged is recognised.
    """
    started = time.perf_counter()
    fused = crowd_labels().filter(task=task).first()
    if fused is not None:
        mask = rle.decode(fused.mask)
        suggestion = Suggestion(mask, None, "", "consensus", 0.0)
    else:
        box = class_prior_box(task=task)
        if box is None:
            return None
        prompted = suggestion_make(task=task, box=box)
        suggestion = Suggestion(prompted.mask, prompted.predicted_iou, prompted.model_version, "class_prior", 0.0)
    cache.set(_handed_out_key(task.pk, mask_digest(suggestion.rle)), suggestion.source, INITIAL_MASK_MEMORY_S)
    return Suggestion(
        suggestion.mask,
        suggestion.predicted_iou,
        suggestion.model_version,
        suggestion.source,
        (time.perf_counter() - started) * 1000,
    )


def initial_mask_handed_out(*, task: Task, digest: str, crowd_label: dict | None) -> str | None:
    """The source (``"consensus"`` or ``"class_prior"``) of an initial mask of ``task`` whose
    ``mask_digest`` is ``digest`` and that was handed out within ``INITIAL_MASK_MEMORY_S``, or that
    is the task's crowd label now (``crowd_label``: the mask of its row in ``crowd_labels()``, or
    None); None when no such mask was handed out."""
    source = cache.get(_handed_out_key(task.pk, digest))
    if source is not None:
        return source
    return "consensus" if crowd_label is not None and mask_digest(crowd_label) == digest else None


def crowd_labels() -> QuerySet[FusedLabel]:
    """The fused labels handed out as initial masks: those of ``CROWD_LABEL_MIN_VOTES`` or more people."""
    return FusedLabel.objects.filter(votes__gte=CROWD_LABEL_MIN_VOTES)


def images_embed_on_import(*, images: list[Image]) -> None:
    """Queue the embedding of newly imported images (``images_imported`` receiver).

    Without an exported model nothing is queued: embeddings are then requested on first use.
    """
    if not settings.CROWDSEG_EMBED_ON_IMPORT:
        return
    try:
        model_manifest()
    except ModelUnavailable as exc:
        logger.warning("not embedding %d new images: %s", len(images), exc.message)
        return
    for image in images:
        embedding_request(image=image)


EMBEDDING_FORMATS = {"int8": 1, "float16": 2}


def embedding_payload(embedding: ImageEmbedding, fmt: str) -> bytes:
    """The embedding in the compact binary form documented on ``TaskEmbeddingView``."""
    array = embedding_array(embedding)  # float16, as stored
    channels, height, width = array.shape
    header = b"CSEMB1" + bytes([EMBEDDING_FORMATS[fmt], 0]) + np.array(array.shape, "<u4").tobytes()
    if fmt == "float16":
        return header + array.astype("<f2").tobytes()
    values, scales = quantise_embedding(array)
    return header + scales.astype("<f4").tobytes() + values.astype(np.int8).tobytes()


def embedding_from_payload(payload: bytes) -> np.ndarray:
    """The (C, H, W) float32 embedding from ``embedding_payload`` bytes (what a client does)."""
    if payload[:6] != b"CSEMB1" or payload[6] not in EMBEDDING_FORMATS.values():
        raise ValueError("not a crowdseg embedding payload")
    channels, height, width = (int(v) for v in np.frombuffer(payload[8:20], "<u4"))
    body = payload[20:]
    if payload[6] == EMBEDDING_FORMATS["float16"]:
        return np.frombuffer(body, "<f2").reshape(channels, height, width).astype(np.float32)
    scales = np.frombuffer(body[: 4 * channels], "<f4")
    values = np.frombuffer(body[4 * channels :], np.int8).reshape(channels, height, width)
    return dequantise_embedding(values, scales)
