"""The researcher API: datasets, label classes, imports, gold standards, and who may see what."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from annotations.models import Dataset, GoldStandard, Image, Task
from inference.engine import rle
from tests.conftest import client_for
from tests.factories import DatasetFactory, image_import, png_bytes

pytestmark = pytest.mark.django_db


def upload(name: str, data: bytes):
    f = io.BytesIO(data)
    f.name = name
    return f


def test_researcher_creates_a_dataset_with_label_classes(alice):
    r = client_for(alice).post(
        "/api/v1/datasets", {"name": "Livers", "label_classes": ["liver", "tumour"]}, format="json"
    )
    assert r.status_code == 201, r.content
    dataset = Dataset.objects.get(name="Livers")
    assert dataset.owner == alice
    assert sorted(dataset.label_classes.values_list("name", flat=True)) == ["liver", "tumour"]


def test_volunteers_cannot_create_datasets(volunteer):
    r = client_for(volunteer).post("/api/v1/datasets", {"name": "Mine"}, format="json")
    assert r.status_code == 403
    assert not Dataset.objects.exists()


def test_duplicate_dataset_name_is_a_conflict(alice, dataset):
    r = client_for(alice).post("/api/v1/datasets", {"name": dataset.name}, format="json")
    assert r.status_code == 409


def test_researcher_imports_pngs_and_each_gets_a_task(alice, dataset):
    files = [upload("a.png", png_bytes(seed=1)), upload("b.png", png_bytes(seed=2, mode="RGB"))]
    r = client_for(alice).post(f"/api/v1/datasets/{dataset.pk}/images", {"files": files}, format="multipart")
    assert r.status_code == 201, r.content
    assert r.json()["created"] == 2
    assert Image.objects.filter(dataset=dataset).count() == 2
    assert Task.objects.filter(image__dataset=dataset).count() == 2
    image = Image.objects.get(dataset=dataset, modality="RGB")  # b.png
    assert (image.width, image.height, image.modality) == (64, 48, "RGB")
    assert image.display.name.endswith(".webp") and image.model_input.name.endswith(".npy")
    assert image.display.storage.exists(image.display.name)


def test_importing_the_same_file_twice_changes_nothing(alice, dataset):
    client = client_for(alice)
    data = png_bytes(seed=3)
    client.post(f"/api/v1/datasets/{dataset.pk}/images", {"files": [upload("a.png", data)]}, format="multipart")
    r = client.post(f"/api/v1/datasets/{dataset.pk}/images", {"files": [upload("a.png", data)]}, format="multipart")
    assert r.status_code == 201
    assert (r.json()["created"], r.json()["skipped"]) == (0, 1)
    assert Image.objects.filter(dataset=dataset).count() == 1


def stored_files(settings) -> set:
    roots = [settings.MEDIA_ROOT, settings.DATA_DIR / "private"]
    return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def test_it_rejects_a_corrupt_file_naming_it_and_imports_nothing(alice, dataset, settings):
    before = stored_files(settings)
    good = upload("good.png", png_bytes(seed=4))
    bad = upload("scan-0042.png", png_bytes(seed=5)[:60])
    r = client_for(alice).post(f"/api/v1/datasets/{dataset.pk}/images", {"files": [good, bad]}, format="multipart")
    assert r.status_code == 400
    assert "scan-0042.png" in r.json()["error"]["message"]
    assert not Image.objects.exists() and not Task.objects.exists()
    assert stored_files(settings) == before  # the good file's renditions were removed too


def test_it_rejects_a_huge_png_before_decoding(alice, dataset):
    # A 50,000 x 50,000 PNG of a single colour compresses to a few hundred kilobytes.
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 50_001))
        + chunk(b"IEND", b"")
    )
    r = client_for(alice).post(
        f"/api/v1/datasets/{dataset.pk}/images", {"files": [upload("bomb.png", bomb)]}, format="multipart"
    )
    assert r.status_code == 400
    assert "bomb.png" in r.json()["error"]["message"]
    assert not Image.objects.exists()


def test_outsider_cannot_see_or_import_into_a_dataset(charlie, dataset):
    client = client_for(charlie)
    assert client.get(f"/api/v1/datasets/{dataset.pk}").status_code == 404
    r = client.post(
        f"/api/v1/datasets/{dataset.pk}/images", {"files": [upload("a.png", png_bytes())]}, format="multipart"
    )
    assert r.status_code == 404
    assert client.get("/api/v1/datasets").json()["count"] == 0
    assert not Image.objects.exists()


def test_image_list_names_each_task(alice, dataset):
    image = image_import(dataset)
    r = client_for(alice).get(f"/api/v1/datasets/{dataset.pk}/images")
    assert r.status_code == 200
    assert r.json()["results"][0]["tasks"] == [{"id": str(image.tasks.get().pk), "label_class": "liver"}]


def test_volunteer_cannot_list_images(volunteer, dataset):
    assert client_for(volunteer).get(f"/api/v1/datasets/{dataset.pk}/images").status_code == 403


def test_new_label_class_gets_a_task_on_every_image(alice, dataset):
    image_import(dataset, seed=1)
    image_import(dataset, seed=2)
    r = client_for(alice).post(f"/api/v1/datasets/{dataset.pk}/label-classes", {"name": "vessel"}, format="json")
    assert r.status_code == 201
    assert Task.objects.filter(label_class__name="vessel").count() == 2


def test_researcher_sets_a_gold_standard_as_rle(alice, dataset):
    image = image_import(dataset, height=48, width=64)
    task = image.tasks.get()
    mask = np.zeros((48, 64), bool)
    mask[10:30, 5:40] = True
    r = client_for(alice).put(f"/api/v1/tasks/{task.pk}/gold", {"rle": rle.encode(mask)}, format="json")
    assert r.status_code == 200, r.content
    gold = GoldStandard.objects.get(task=task)
    assert gold.area == mask.sum()
    assert np.array_equal(rle.decode(gold.mask), mask)


def test_researcher_sets_a_gold_standard_as_polygons(alice, dataset):
    task = image_import(dataset, height=48, width=64).tasks.get()
    r = client_for(alice).put(
        f"/api/v1/tasks/{task.pk}/gold", {"polygons": [[5, 5, 40, 5, 40, 30, 5, 30]]}, format="json"
    )
    assert r.status_code == 200, r.content
    assert 800 < GoldStandard.objects.get(task=task).area < 1000


def test_it_rejects_a_mask_of_wrong_size(alice, dataset):
    task = image_import(dataset, height=48, width=64).tasks.get()
    r = client_for(alice).put(
        f"/api/v1/tasks/{task.pk}/gold", {"rle": rle.encode(np.ones((64, 48), bool))}, format="json"
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_mask"
    assert "48" in r.json()["error"]["message"]
    assert not GoldStandard.objects.exists()


def test_it_rejects_a_malformed_rle(alice, dataset):
    task = image_import(dataset, height=48, width=64).tasks.get()
    for bad in (
        {"size": [48, 64], "counts": "!!!"},
        {"size": [48, 64], "counts": [10, 5]},
        {"counts": "0"},
        {"size": [10**6, 10**6], "counts": "0"},
    ):
        r = client_for(alice).put(f"/api/v1/tasks/{task.pk}/gold", {"rle": bad}, format="json")
        assert r.status_code == 400, bad
        assert r.json()["error"]["code"] == "invalid_mask"
    assert not GoldStandard.objects.exists()


def test_outsider_cannot_read_or_set_gold(charlie, dataset):
    task = image_import(dataset).tasks.get()
    client = client_for(charlie)
    assert client.get(f"/api/v1/tasks/{task.pk}/gold").status_code == 404
    mask = rle.encode(np.ones((48, 64), bool))
    assert client.put(f"/api/v1/tasks/{task.pk}/gold", {"rle": mask}, format="json").status_code == 404
    assert not GoldStandard.objects.exists()


def test_staff_see_no_research_data_and_superusers_see_all(db):
    from tests.factories import UserFactory

    DatasetFactory()
    DatasetFactory()
    staff = UserFactory(is_staff=True, role="staff")
    assert client_for(staff).get("/api/v1/datasets").status_code == 403
    root = UserFactory(is_staff=True, is_superuser=True, role="staff")
    assert client_for(root).get("/api/v1/datasets").json()["count"] == 2


def test_collaborators_research_the_dataset_and_see_it_once(alice, charlie):
    from tests.factories import ResearcherFactory

    dataset = DatasetFactory(owner=alice)
    dataset.collaborators.add(charlie, ResearcherFactory())
    listed = client_for(charlie).get("/api/v1/datasets").json()
    assert [d["id"] for d in listed["results"]] == [dataset.pk]
    r = client_for(charlie).post(f"/api/v1/datasets/{dataset.pk}/label-classes", {"name": "lesion"}, format="json")
    assert r.status_code == 201
    assert dataset.label_classes.filter(name="lesion").exists()


def test_display_rendition_is_bounded_and_has_no_metadata(alice, dataset):
    image = image_import(dataset, height=1500, width=3000, seed=9)
    with image.display.open("rb") as fh:
        rendition = PILImage.open(io.BytesIO(fh.read()))
    assert max(rendition.size) == 1024
    assert not rendition.info.get("exif") and not rendition.info.get("xmp")
    assert (image.width, image.height) == (3000, 1500)


def test_it_refuses_an_upload_over_the_limit(alice, dataset, settings):
    settings.CROWDSEG_MAX_UPLOAD_BYTES = 1000
    r = client_for(alice).post(
        f"/api/v1/datasets/{dataset.pk}/images", {"files": [upload("big.png", png_bytes(200, 200))]}, format="multipart"
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    assert not Image.objects.exists()
