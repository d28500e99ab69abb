"""Dataset actions: create datasets and label classes, import images, set gold standards."""

from __future__ import annotations

import hashlib
import hmac
import io
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import transaction

from accounts.models import User
from crowdseg.errors import Conflict, DomainError
from inference.engine import rle

from .io import DecodedImage, ReadOptions, read_images
from .io.preprocess import display_rendition
from .models import Dataset, GoldStandard, Image, LabelClass, Task
from .signals import images_imported


class ImportSource(Protocol):
    """A file to import: a name for messages and a way to get its bytes."""

    name: str

    def read(self) -> bytes: ...


@dataclass(frozen=True)
class PathSource:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class BytesSource:
    name: str
    data: bytes

    def read(self) -> bytes:
        return self.data


@dataclass
class ImportResult:
    created: list[Image] = field(default_factory=list)
    skipped: int = 0  # images already in the dataset (same file, same frame)


def dataset_create(*, name: str, owner: User, description: str = "", label_classes: Iterable[str] = ()) -> Dataset:
    if Dataset.objects.filter(name=name).exists():
        raise Conflict(f"a dataset named {name!r} exists", code="duplicate", fields={"name": ["taken"]})
    with transaction.atomic():
        dataset = Dataset.objects.create(name=name, owner=owner, description=description)
        for class_name in label_classes:
            label_class_create(dataset=dataset, name=class_name)
    return dataset


@transaction.atomic
def label_class_create(*, dataset: Dataset, name: str, color: str = "#ff5a36", instructions: str = "") -> LabelClass:
    """Add a structure to segment; every image of the dataset gets a task for it."""
    if LabelClass.objects.filter(dataset=dataset, name=name).exists():
        raise Conflict(f"label class {name!r} already exists in {dataset.name}", code="duplicate")
    label_class = LabelClass.objects.create(dataset=dataset, name=name, color=color, instructions=instructions)
    Task.objects.bulk_create(Task(image=image, label_class=label_class) for image in dataset.images.all())
    return label_class


def images_import(
    *,
    dataset: Dataset,
    sources: Iterable[ImportSource],
    options: ReadOptions | None = None,
    on_file: Callable[[str, int], None] | None = None,
    keep: Callable[[DecodedImage], bool] | None = None,
    keep_file_names: bool = False,
) -> ImportResult:
    """Import every image in ``sources`` into ``dataset``, all or nothing.

    Each file is decoded, de-identified and preprocessed by ``annotations.io``; each 2-D image
    gets a display rendition, a model input and one task per label class. Files already imported
    (same bytes, same frame: ``source_sha256`` and ``frame_key``, never the name) are skipped, so
    importing twice changes nothing.
    File names often hold patient names or IDs, so an image's ``source_name`` is an opaque name
    (``_source_name_opaque``) unless ``keep_file_names`` is True, the researcher's choice for
    this import. A skipped file keeps the name it was first imported with.
    A bad file raises ImageReadError naming it; then no row and no stored file remains.
    ``keep(image)``, when given, chooses which decoded images to import (e.g. some slices).
    ``on_file(name, images_created)`` is called after each file (progress bars).
    ``images_imported`` is sent once the transaction commits.
    """
    options = options or ReadOptions()
    result = ImportResult()
    written: list[tuple[Storage, str]] = []
    try:
        with transaction.atomic():
            label_classes = list(dataset.label_classes.all())
            for source in sources:
                data = source.read()
                sha = hashlib.sha256(data).hexdigest()
                decoded = read_images(data, source.name, options, uid_key=dataset.uid_key.encode())
                if keep is not None:
                    decoded = [d for d in decoded if keep(d)]
                present = set(
                    Image.objects.filter(dataset=dataset, source_sha256=sha).values_list("frame_key", flat=True)
                )
                new = [d for d in decoded if d.frame_key not in present]
                result.skipped += len(decoded) - len(new)
                for position, item in enumerate(new):
                    # The original upload (not de-identified) is kept only where a setting asks.
                    original = data if settings.CROWDSEG_KEEP_ORIGINALS and position == 0 else None
                    if keep_file_names:
                        name = source.name
                    else:
                        name = _source_name_opaque(dataset=dataset, sha256=sha, source_format=item.source_format)
                    image = _image_store(dataset, name, sha, item, original, written)
                    Task.objects.bulk_create(Task(image=image, label_class=lc) for lc in label_classes)
                    result.created.append(image)
                if on_file:
                    on_file(source.name, len(new))
            created = list(result.created)
            if created:
                transaction.on_commit(lambda: images_imported.send(sender=Image, images=created))
    except BaseException:
        for storage, name in written:
            storage.delete(name)
        raise
    return result


def _source_name_opaque(*, dataset: Dataset, sha256: str, source_format: str) -> str:
    """The name an imported file is stored under when its real name is not kept.

    ``<format>-<16 hex digits>``: HMAC-SHA256 of the file's sha256 under the dataset's secret.
    The same file gets the same name in the same dataset (frames and slices of one file share
    it; ``frame_key`` tells them apart); nothing of the real name is in it, and nobody without
    the secret can tell from it whether a given file was imported.
    """
    digest = hmac.new(dataset.uid_key.encode(), b"source-name:" + sha256.encode(), hashlib.sha256).hexdigest()
    return f"{source_format}-{digest[:16]}"


def _image_store(
    dataset: Dataset,
    source_name: str,
    sha: str,
    item: DecodedImage,
    original: bytes | None,
    written: list[tuple[Storage, str]],
) -> Image:
    height, width = item.pixels.shape[:2]
    image = Image(
        dataset=dataset,
        modality=item.modality,
        source_format=item.source_format,
        source_name=source_name[:255],
        source_sha256=sha,
        frame_key=item.frame_key,
        width=width,
        height=height,
        metadata=item.metadata,
        preprocessing=item.preprocessing,
    )
    if item.slice is not None:
        image.slice_axis, image.slice_index, image.slice_count = item.slice.axis, item.slice.index, item.slice.count
    stem = f"{dataset.pk}/{uuid.uuid4().hex}"
    display_bytes, ext = display_rendition(item.pixels)
    _save_file(image.display, f"{stem}.{ext}", display_bytes, written)
    buf = io.BytesIO()
    np.save(buf, item.pixels, allow_pickle=False)
    _save_file(image.model_input, f"{stem}.npy", buf.getvalue(), written)
    if original is not None:
        _save_file(image.original, f"{stem}.orig", original, written)
    image.save()
    return image


def _save_file(field_file, name: str, content: bytes, written: list[tuple[Storage, str]]) -> None:
    field_file.save(name, ContentFile(content), save=False)
    written.append((field_file.storage, field_file.name))


def image_model_input(image: Image) -> np.ndarray:
    """The (H, W, 3) uint8 array the model encodes."""
    with image.model_input.open("rb") as fh:
        return np.load(io.BytesIO(fh.read()), allow_pickle=False)


def mask_parse(*, height: int, width: int, rle_mask: dict | None = None, polygons: list | None = None) -> np.ndarray:
    """A mask sent by a client, as COCO RLE or as polygons, checked against the image size.

    Returns (H, W) bool. Raises DomainError naming what is wrong (size, malformed RLE, bad
    polygon); exactly one of ``rle_mask`` and ``polygons`` must be given.
    """
    if (rle_mask is None) == (polygons is None):
        raise DomainError("send the mask as either 'rle' or 'polygons'", code="invalid_mask")
    try:
        if rle_mask is not None:
            return rle.decode(rle_mask, expected_size=(height, width))
        return rle.from_polygons(polygons, height, width)
    except ValueError as exc:
        raise DomainError(f"invalid mask: {exc}", code="invalid_mask") from None


@transaction.atomic
def gold_standard_set(
    *, task: Task, mask: np.ndarray, created_by: User | None, source: str = GoldStandard.Source.EXPERT
) -> GoldStandard:
    """Make ``mask`` ((H, W) bool at the image's native size) the expert answer of ``task``."""
    if mask.shape != (task.image.height, task.image.width):
        raise DomainError(
            f"mask is {mask.shape[0]}x{mask.shape[1]} (height x width) but the image is "
            f"{task.image.height}x{task.image.width}",
            code="invalid_mask",
        )
    encoded = rle.encode(mask)
    gold, _ = GoldStandard.objects.update_or_create(
        task=task,
        defaults={"mask": encoded, "area": int(mask.sum()), "source": source, "created_by": created_by},
    )
    return gold
