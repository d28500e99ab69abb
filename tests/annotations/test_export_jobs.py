"""Export jobs end to end: the admin flow, the API, the command, progress over the WebSocket's
events, cancel, expiry, and the bad input the issue lists (each a clear error, nothing left)."""

from __future__ import annotations

import errno
import io
import json
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts.services import rater_id, user_role_set
from annotations import consensus, services
from annotations.exports import archive
from annotations.models import Annotation, ExportJob, GoldStandard
from inference.engine import rle
from tests.conftest import client_for
from tests.factories import DatasetFactory, ResearcherFactory, UserFactory, image_import

pytestmark = pytest.mark.django_db

H, W = 48, 64


def disk(cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.ogrid[:H, :W]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    return tmp_path


@pytest.fixture
def researchers(alice):
    user_role_set(user=alice, role="researcher")
    dave = user_role_set(user=ResearcherFactory(username="dave"), role="researcher")
    charlie = user_role_set(user=ResearcherFactory(username="charlie"), role="researcher")
    return alice, dave, charlie


@pytest.fixture
def brain(researchers):
    """Alice's dataset (Dave collaborates): 6 PNG images, white and grey matter annotated by 3
    raters and fused, golds on 2; a 'lesion' class nobody annotated."""
    alice, dave, _ = researchers
    dataset = DatasetFactory(owner=alice, name="brain", label_classes=["white matter", "grey matter", "lesion"])
    dataset.collaborators.add(dave)
    raters = UserFactory.create_batch(3)
    rng = np.random.default_rng(1)
    for seed in range(6):
        image = image_import(dataset, height=H, width=W, seed=seed)
        for task in image.tasks.exclude(label_class__name="lesion"):
            cy, cx = rng.uniform(18, 30), rng.uniform(20, 44)
            truth = disk(cy, cx, 9 if task.label_class.name == "white matter" else 5)
            for k, person in enumerate(raters):
                mask = disk(cy + rng.normal(0, 0.4), cx + rng.normal(0, 0.4), (9 if truth.sum() > 150 else 5) + k - 1)
                Annotation.objects.create(
                    task=task,
                    annotator=person,
                    mask=rle.encode(mask),
                    area=int(mask.sum()),
                    client_key=f"{seed}-{k}" + task.label_class.name[:3],
                )
            if seed < 2:
                GoldStandard.objects.create(task=task, mask=rle.encode(truth), area=int(truth.sum()))
    for label_class in dataset.label_classes.exclude(name="lesion"):
        consensus.fusion_run(label_class=label_class)
    return dataset, raters


def tissue(dataset) -> list[int]:
    """The ids of the annotated classes."""
    return list(dataset.label_classes.exclude(name="lesion").order_by("pk").values_list("pk", flat=True))


def zip_texts(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_admin_flow_exports_and_only_the_requester_downloads(
    brain, researchers, django_capture_on_commit_callbacks, celery_in_process
):
    from pycocotools.coco import COCO

    dataset, raters = brain
    alice, dave, charlie = researchers
    client = Client()
    client.force_login(alice)
    chosen = client.post("/admin/annotations/dataset/", {"action": "export", "_selected_action": [dataset.pk]})
    assert chosen.status_code == 302 and chosen.url == f"/admin/annotations/dataset/{dataset.pk}/export/"
    form = client.get(chosen.url)
    assert form.status_code == 200 and b"nnU-Net v2 raw dataset" in form.content
    classes = dataset.label_classes.exclude(name="lesion").order_by("pk")
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            chosen.url,
            {
                "formats": ["nnunet", "coco", "masks"],
                "contents": ["images", "fused", "raters"],
                "label_classes": [c.pk for c in classes],
                "nnunet_id": 7,
            },
        )
    job = ExportJob.objects.get()
    assert started.status_code == 302 and started.url == f"/admin/annotations/exportjob/{job.pk}/change/"
    assert job.status == ExportJob.Status.DONE, job.error
    assert job.progress == {"stage": "writing", "done": 6, "total": 6} and job.requested_by == alice
    page = client.get(started.url)
    assert page.status_code == 200 and b"download" in page.content and b"export-progress" in page.content

    download = client.get(f"/admin/annotations/exportjob/{job.pk}/download/")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    files = zip_texts(b"".join(download.streaming_content))
    assert "nnunet/Dataset007_brain/dataset.json" in files and "datacard.json" in files
    coco = json.loads(files["coco/annotations/fused.json"])
    assert len(coco["images"]) == 6 and len(coco["annotations"]) == 12
    raters_json = files["coco/annotations/raters.json"]
    names = {rater_id(r.pk) for r in raters}
    assert {a["rater"] for a in json.loads(raters_json)["annotations"]} == names
    assert {n.split("/")[3] for n in files if n.startswith("masks/raters/")} == names
    everything = b"".join(files.values())
    for person in raters:  # opaque ids only: no username, pseudonym or database id anywhere
        assert person.username.encode() not in everything and person.pseudonym.encode() not in everything
    assert b"alice" not in everything
    card = json.loads(files["datacard.json"])
    assert card["datasheet"]["collection_process"]["raters"] == 3
    assert card["datasheet"]["collection_process"]["raters_per_image"]["median"] == 3
    path = services.exports_dir() / job.file_name
    assert path.is_file()
    (services.exports_dir() / "x").mkdir()
    # pycocotools reads what the admin handed out.
    (services.exports_dir() / "x" / "fused.json").write_bytes(files["coco/annotations/fused.json"])
    assert len(COCO(str(services.exports_dir() / "x" / "fused.json")).getAnnIds()) == 12

    collaborator = Client()
    collaborator.force_login(dave)
    assert collaborator.get(started.url).status_code == 200  # sees the job of a dataset they research
    assert collaborator.get(f"/admin/annotations/exportjob/{job.pk}/download/").status_code == 404
    outsider = Client()
    outsider.force_login(charlie)
    assert outsider.get(f"/admin/annotations/exportjob/{job.pk}/download/").status_code == 404
    assert outsider.get(f"/admin/annotations/dataset/{dataset.pk}/export/").status_code in (302, 404)


def test_the_admin_form_refuses_bad_input_and_creates_nothing(brain, researchers):
    dataset, _ = brain
    client = Client()
    client.force_login(researchers[0])
    lesion = dataset.label_classes.get(name="lesion")
    answer = client.post(
        f"/admin/annotations/dataset/{dataset.pk}/export/",  # the class nobody annotated
        {"formats": ["nnunet"], "contents": ["images", "fused"], "label_classes": [lesion.pk], "nnunet_id": 501},
        follow=True,
    )
    assert (
        answer.status_code == 200 and b"Nothing was exported. no fused labels for &#x27;lesion&#x27;" in answer.content
    )
    assert not ExportJob.objects.exists()


def test_the_api_starts_follows_and_downloads_an_export(
    brain, researchers, django_capture_on_commit_callbacks, celery_in_process
):
    dataset, _ = brain
    alice, dave, _ = researchers
    with django_capture_on_commit_callbacks(execute=True):
        started = client_for(dave).post(
            f"/api/v1/datasets/{dataset.pk}/exports",
            {
                "formats": ["coco"],
                "contents": ["fused", "gold"],
                "min_confidence": 0.5,
                "label_classes": tissue(dataset),
            },
            format="json",
        )
    assert started.status_code == 201, started.content
    export_id = started.json()["id"]
    detail = client_for(dave).get(f"/api/v1/exports/{export_id}").json()
    assert detail["status"] == "done" and detail["download"] == f"/api/v1/exports/{export_id}/download"
    assert detail["summary"]["coco"]["annotations"] == {"fused": 12, "gold": 4}
    download = client_for(dave).get(detail["download"])
    assert download.status_code == 200
    files = zip_texts(b"".join(download.streaming_content))
    assert json.loads(files["coco/annotations/gold.json"])["annotations"][0]["iscrowd"] == 0
    # The dataset's owner sees the export but its link is Dave's alone.
    assert client_for(alice).get(f"/api/v1/exports/{export_id}").status_code == 200
    assert client_for(alice).get(detail["download"]).status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"formats": ["tiff"]}, "invalid"),
        ({"formats": ["nnunet"], "label_classes": ["lesion"]}, "no_fused_labels"),
        ({"formats": ["nnunet"], "label_classes": "tissue", "min_confidence": 1.0}, "no_fused_labels"),
        ({"formats": ["nnunet"], "label_classes": "tissue", "review": ["accepted"]}, "no_fused_labels"),
        ({"formats": ["masks"], "contents": ["gold"], "label_classes": ["lesion"]}, "empty_selection"),
        ({"formats": ["dicom-seg"], "label_classes": "tissue"}, "not_dicom"),
        ({"formats": ["nnunet"], "label_classes": [999999]}, "invalid_export"),
        ({"formats": ["nnunet"], "campaign": 999999}, "invalid_export"),
    ],
)
def test_the_api_refuses_bad_exports_clearly_and_creates_nothing(brain, researchers, body, code):
    dataset, _ = brain
    body = dict(body)
    if body.get("label_classes") == ["lesion"]:
        body["label_classes"] = [dataset.label_classes.get(name="lesion").pk]
    elif body.get("label_classes") == "tissue":
        body["label_classes"] = tissue(dataset)
    answer = client_for(researchers[0]).post(f"/api/v1/datasets/{dataset.pk}/exports", body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == code
    assert not ExportJob.objects.exists()


def test_a_disk_that_fills_mid_export_fails_the_job_and_leaves_no_file(brain, researchers, monkeypatch):
    class FullDisk(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > 3000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(archive, "open_for_writing", lambda path: FullDisk(path, "xb"))
    dataset, _ = brain
    job = services.export_start(
        dataset=dataset, requested_by=researchers[0], formats=["nnunet"], label_class_ids=tissue(dataset), enqueue=False
    )
    job = services.export_run(job_id=job.pk)
    assert job.status == ExportJob.Status.FAILED
    assert "disk of the data directory filled up" in job.error and job.file_name == ""
    assert list(services.exports_dir().iterdir()) == []


def test_cancelling_a_running_export_stops_it_and_removes_its_file(brain, researchers, monkeypatch):
    from annotations.exports import writer

    monkeypatch.setattr(writer, "PROGRESS_EVERY", 2)
    dataset, _ = brain
    job = services.export_start(
        dataset=dataset, requested_by=researchers[0], formats=["masks"], label_class_ids=tissue(dataset), enqueue=False
    )

    def cancel_midway(progress):
        if progress["done"] == 2:
            services.export_cancel(job=ExportJob.objects.get(pk=job.pk))

    job = services.export_run(job_id=job.pk, on_progress=cancel_midway)
    assert job.status == ExportJob.Status.CANCELLED and job.progress["done"] == 2
    assert list(services.exports_dir().iterdir()) == []
    queued = services.export_start(
        dataset=dataset, requested_by=researchers[0], formats=["masks"], label_class_ids=tissue(dataset), enqueue=False
    )
    assert services.export_cancel(job=queued).status == ExportJob.Status.CANCELLED
    assert services.export_run(job_id=queued.pk) is None  # a cancelled job is never claimed


def test_progress_is_announced_to_the_requester(brain, researchers, monkeypatch, django_capture_on_commit_callbacks):
    from crowdseg import events

    sent = []
    monkeypatch.setattr(events, "_send", lambda group, event: sent.append((group, event)))
    dataset, _ = brain
    job = services.export_start(
        dataset=dataset, requested_by=researchers[1], formats=["coco"], label_class_ids=tissue(dataset), enqueue=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.export_run(job_id=job.pk)
    assert {g for g, _ in sent} == {events.player_group(researchers[1].pk)}
    kinds = [(e["type"], e["status"], e.get("done")) for _, e in sent]
    assert kinds[0] == ("export.progress", "running", 0)
    assert ("export.progress", "running", 6) in kinds and kinds[-1] == ("export.progress", "done", None)


def test_an_expired_link_is_gone_and_its_file_removed(brain, researchers):
    dataset, _ = brain
    alice = researchers[0]
    job = services.export_start(
        dataset=dataset, requested_by=alice, formats=["masks"], label_class_ids=tissue(dataset), enqueue=False
    )
    job = services.export_run(job_id=job.pk)
    later = job.expires_at + timedelta(seconds=1)
    with pytest.raises(services.Gone):
        services.export_file_for_download(job=job, user=alice, now=later)
    assert services.exports_expire(now=timezone.now()) == 0
    assert services.exports_expire(now=later) == 1
    job.refresh_from_db()
    assert job.status == ExportJob.Status.EXPIRED and list(services.exports_dir().iterdir()) == []
    assert client_for(alice).get(f"/api/v1/exports/{job.pk}/download").status_code == 410


def test_the_command_exports_and_refuses_clearly(brain, tmp_path):
    dataset, _ = brain
    out = io.StringIO()
    target = tmp_path / "brain.zip"
    call_command(
        "export_dataset", "--dataset", "brain", "--format", "nnunet", "--format", "masks",
        "--label-class", "white matter", "--ignore-above-bits", "0.5", "--output", str(target),
        stdout=out, verbosity=0,
    )  # fmt: skip
    assert "nnunet" in out.getvalue() and target.is_file()
    with zipfile.ZipFile(target) as zf:
        dataset_json = json.loads(zf.read("nnunet/Dataset501_brain/dataset.json"))
    assert dataset_json["labels"] == {"background": 0, "white matter": 1, "ignore": 2}
    with pytest.raises(CommandError, match="DICOM SEG needs images imported from DICOM"):
        call_command(
            "export_dataset", "--dataset", "brain", "--format", "dicom-seg", "--label-class", "grey matter", verbosity=0
        )
    with pytest.raises(CommandError, match="no dataset named"):
        call_command("export_dataset", "--dataset", "nope", "--format", "coco", verbosity=0)
    with pytest.raises(CommandError, match="no label class 'liver'"):
        call_command("export_dataset", "--dataset", "brain", "--format", "coco", "--label-class", "liver", verbosity=0)


def test_synthetic_pairs_and_golds_come_out_flagged_and_in_their_own_folders(brain, researchers):
    from tests.factories import JobFactory, SyntheticSampleFactory

    dataset, _ = brain
    white = dataset.label_classes.get(name="white matter")
    generator = JobFactory(dataset=dataset, kind="pix2pix", status="done")
    square = np.zeros((32, 32), bool)
    square[8:20, 8:20] = True
    SyntheticSampleFactory(job=generator, masks={str(white.pk): rle.encode(square)}, seed=3)
    job = services.export_start(
        dataset=dataset,
        requested_by=researchers[0],
        formats=["masks"],
        contents=["images", "fused", "gold", "synthetic"],
        label_class_ids=[white.pk],
        enqueue=False,
    )
    job = services.export_run(job_id=job.pk)
    assert job.status == ExportJob.Status.DONE, job.error
    files = zip_texts((services.exports_dir() / job.file_name).read_bytes())
    assert "synthetic/images/synthetic_00001.png" in files
    assert "synthetic/masks/white_matter/synthetic_00001.png" in files
    assert json.loads(files["synthetic/synthetic.json"])[0]["synthetic"] is True
    assert len([n for n in files if n.startswith("masks/gold/white_matter/")]) == 2
    card = json.loads(files["datacard.json"])
    assert card["datasheet"]["composition"]["synthetic"] == {"count": 1, "exported": True}
    assert card["croissant_rai"]["rai:hasSyntheticData"] is True
    assert card["datasheet"]["composition"]["gold_standards"] == 2
