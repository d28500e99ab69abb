"""The Django admin: researchers' pages render and the import page imports."""

from __future__ import annotations

import io

import pytest
from django.test import Client

from annotations.models import Image
from tests.factories import UserFactory, image_import, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client():
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True, role="staff"))
    return client


def test_every_changelist_renders(staff_client, dataset):
    image_import(dataset)
    for model in ("dataset", "image", "task", "annotation", "goldstandard"):
        r = staff_client.get(f"/admin/annotations/{model}/")
        assert r.status_code == 200, model
    assert staff_client.get("/admin/accounts/user/").status_code == 200
    image = Image.objects.get()
    assert staff_client.get(f"/admin/annotations/image/{image.pk}/change/").status_code == 200


def test_import_page_imports_files(staff_client, dataset):
    upload = io.BytesIO(png_bytes(seed=3))
    upload.name = "slice.png"
    r = staff_client.post(
        f"/admin/annotations/dataset/{dataset.pk}/import/",
        {"files": [upload], "ct_window": "soft_tissue", "nifti_axis": "axial"},
    )
    assert r.status_code == 302
    assert Image.objects.filter(dataset=dataset, source_format="png").count() == 1


def test_import_page_reports_a_bad_file_and_imports_nothing(staff_client, dataset):
    good, bad = io.BytesIO(png_bytes(seed=4)), io.BytesIO(b"not an image at all")
    good.name, bad.name = "good.png", "broken.png"
    r = staff_client.post(
        f"/admin/annotations/dataset/{dataset.pk}/import/",
        {"files": [good, bad], "ct_window": "soft_tissue", "nifti_axis": "axial"},
    )
    assert r.status_code == 200
    assert "broken.png" in r.content.decode()
    assert not Image.objects.exists()


def test_volunteers_cannot_open_the_admin(dataset):
    client = Client()
    client.force_login(UserFactory())
    r = client.get(f"/admin/annotations/dataset/{dataset.pk}/import/")
    assert r.status_code == 302 and "/admin/login/" in r["Location"]


def researcher_client(user) -> Client:
    from accounts.services import user_role_set

    user_role_set(user=user, role="researcher")
    client = Client()
    client.force_login(user)
    return client


def test_researcher_sees_only_their_own_datasets_in_the_admin(alice, charlie, dataset):
    image_import(dataset)
    own = researcher_client(alice)
    other = researcher_client(charlie)
    assert dataset.name in own.get("/admin/annotations/dataset/").content.decode()
    assert dataset.name not in other.get("/admin/annotations/dataset/").content.decode()
    image = Image.objects.get()
    assert own.get(f"/admin/annotations/image/{image.pk}/change/").status_code == 200
    assert other.get(f"/admin/annotations/image/{image.pk}/change/").status_code == 302  # "does not exist"
    upload = io.BytesIO(png_bytes(seed=8))
    upload.name = "sneaky.png"
    r = other.post(
        f"/admin/annotations/dataset/{dataset.pk}/import/",
        {"files": [upload], "ct_window": "soft_tissue", "nifti_axis": "axial"},
    )
    assert r.status_code == 404
    assert list(Image.objects.all()) == [image]


def test_researcher_creates_a_dataset_they_own(charlie):
    client = researcher_client(charlie)
    r = client.post(
        "/admin/annotations/dataset/add/",
        {
            "name": "Charlie's livers",
            "description": "",
            "label_classes-TOTAL_FORMS": "0",
            "label_classes-INITIAL_FORMS": "0",
        },
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    from annotations.models import Dataset

    assert Dataset.objects.get(name="Charlie's livers").owner == charlie
