"""File names are not kept unless the researcher asks: opaque names by default, the real name on
opt-in, per import (service, command, API, admin), and re-imports skipped either way."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.test import Client

from annotations import services
from annotations.io.samples import pydicom_test_file
from annotations.models import Image
from tests.conftest import client_for
from tests.factories import DatasetFactory, UserFactory, png_bytes

pytestmark = pytest.mark.django_db

NAME = "Doe_Jane_1961-04-12.png"
OPAQUE = re.compile(r"^(png|dicom|nifti)-[0-9a-f]{16}$")


def source(name: str = NAME, seed: int = 1) -> services.BytesSource:
    return services.BytesSource(name, png_bytes(seed=seed))


def upload(name: str, data: bytes) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def test_source_name_is_opaque_by_default(dataset):
    (image,) = services.images_import(dataset=dataset, sources=[source()]).created
    assert OPAQUE.match(image.source_name), image.source_name
    assert "Doe" not in str(image) and "Doe" not in image.source_name


def test_the_same_file_keeps_its_name_in_a_dataset_and_gets_another_elsewhere(alice, dataset):
    first = services.images_import(dataset=dataset, sources=[source()]).created[0]
    other_dataset = DatasetFactory(owner=alice)
    elsewhere = services.images_import(dataset=other_dataset, sources=[source("renamed.png")]).created[0]
    another_file = services.images_import(dataset=dataset, sources=[source(seed=2)]).created[0]
    assert elsewhere.source_name != first.source_name  # the dataset's secret: unlinkable across datasets
    assert another_file.source_name != first.source_name
    first.delete()
    again = services.images_import(dataset=dataset, sources=[source("other-name.png")]).created[0]
    assert again.source_name == first.source_name  # the content decides, not the name


def test_frames_of_one_file_share_one_opaque_name(dataset):
    data = pydicom_test_file("rtdose.dcm").read_bytes()
    images = services.images_import(dataset=dataset, sources=[services.BytesSource("rtdose.dcm", data)]).created
    assert len(images) == 15
    assert len({image.source_name for image in images}) == 1
    assert OPAQUE.match(images[0].source_name) and images[0].source_name.startswith("dicom-")
    assert len({image.frame_key for image in images}) == 15


def test_names_are_kept_when_the_researcher_opts_in(dataset):
    (image,) = services.images_import(dataset=dataset, sources=[source()], keep_file_names=True).created
    assert image.source_name == NAME


@pytest.mark.parametrize("keep_file_names", [False, True])
def test_reimporting_a_file_is_skipped_whatever_its_name(dataset, keep_file_names):
    first = services.images_import(dataset=dataset, sources=[source()], keep_file_names=keep_file_names)
    again = services.images_import(
        dataset=dataset, sources=[source(), source("copy of it.png")], keep_file_names=not keep_file_names
    )
    assert (len(first.created), again.skipped, again.created) == (1, 2, [])
    assert list(Image.objects.all()) == first.created  # the first import's name stays


def test_the_command_keeps_names_only_with_its_flag(alice, tmp_path):
    (tmp_path / NAME).write_bytes(png_bytes(seed=1))
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "Roe_Richard.png").write_bytes(png_bytes(seed=2))
    out = io.StringIO()
    call_command("import_images", str(tmp_path / NAME), "--dataset", "names", "--owner", "alice", stdout=out)
    call_command("import_images", str(tmp_path / "kept"), "--dataset", "names", "--keep-file-names", stdout=out)
    call_command("import_images", str(tmp_path), "--dataset", "names", "--keep-file-names", stdout=out)
    names = sorted(Image.objects.values_list("source_name", flat=True))
    assert len(names) == 2 and OPAQUE.match(names[1]) and names[0] == "Roe_Richard.png"
    assert "0 images imported, 2 already present" in out.getvalue()


def test_the_api_keeps_names_only_when_asked(alice, dataset):
    client = client_for(alice)
    url = f"/api/v1/datasets/{dataset.pk}/images"
    r = client.post(url, {"files": [upload(NAME, png_bytes(seed=1))]}, format="multipart")
    assert r.status_code == 201, r.content
    assert OPAQUE.match(r.json()["images"][0]["source_name"])
    files = [upload("Roe_Richard.png", png_bytes(seed=2)), upload("again.png", png_bytes(seed=1))]
    r = client.post(url, {"files": files, "keep_file_names": "true"}, format="multipart")
    assert r.status_code == 201, r.content
    assert (r.json()["created"], r.json()["skipped"]) == (1, 1)
    assert [image["source_name"] for image in r.json()["images"]] == ["Roe_Richard.png"]
    listed = client.get(url).json()["results"]
    assert sorted(image["source_name"] == "Roe_Richard.png" for image in listed) == [False, True]
    assert NAME not in client.get(url).content.decode()


def test_the_admin_import_keeps_names_only_when_ticked(dataset):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True, role="staff"))
    url = f"/admin/annotations/dataset/{dataset.pk}/import/"
    form = {"ct_window": "soft_tissue", "nifti_axis": "axial"}
    assert client.post(url, {**form, "files": [upload(NAME, png_bytes(seed=1))]}).status_code == 302
    r = client.post(url, {**form, "files": [upload("Roe_Richard.png", png_bytes(seed=2))], "keep_file_names": "on"})
    assert r.status_code == 302
    names = sorted(Image.objects.values_list("source_name", flat=True))
    assert names[0] == "Roe_Richard.png" and OPAQUE.match(names[1])
    assert "keep_file_names" in client.get(url).content.decode()  # the form offers the choice
