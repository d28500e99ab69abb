"""The issue's "done when": from the quickstart's demo, a researcher exports the white-matter
campaign as nnU-Net, COCO and masks from the admin, and each is read back by its own reader."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from annotations import consensus
from annotations.io import ReadOptions
from annotations.io.nifti import volume_slices
from annotations.io.samples import mni_path
from annotations.models import Annotation, ExportJob, FusedLabel, LabelClass
from gamification.demo import DEMO_CAMPAIGN
from gamification.models import Campaign
from inference.engine import rle
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def played_demo(settings, tmp_path):
    """The demo, with three volunteers' white-matter masks on every MNI slice, fused."""
    settings.DATA_DIR = tmp_path
    call_command("load_demo", "--mni-slices", "4", "--mni-unlabelled", "2", stdout=io.StringIO())
    white = LabelClass.objects.get(name="white matter")
    slices, _ = volume_slices(mni_path("wm").read_bytes(), mni_path("wm").name, ReadOptions(nifti_axis="axial"))
    truth = {info.index: plane >= 128 for info, plane in slices}
    volunteers = UserFactory.create_batch(3)
    for task in white.tasks.select_related("image"):
        for k, person in enumerate(volunteers):
            mask = np.roll(truth[task.image.slice_index], k - 1, axis=1)  # each off by up to a pixel
            Annotation.objects.create(
                task=task, annotator=person, mask=rle.encode(mask), area=int(mask.sum()), client_key=f"{task.pk}-{k}"
            )
    consensus.fusion_run(label_class=white)
    return white, volunteers


def test_a_researcher_exports_the_white_matter_campaign_from_the_admin(
    played_demo, tmp_path, monkeypatch, django_capture_on_commit_callbacks, celery_in_process
):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    white, volunteers = played_demo
    campaign = Campaign.objects.get(name=DEMO_CAMPAIGN)
    rachel = User.objects.get(username="rachel")
    client = Client()
    client.force_login(rachel)
    chosen = client.post(
        "/admin/gamification/campaign/", {"action": "campaign_export", "_selected_action": [campaign.pk]}
    )
    assert chosen.status_code == 302 and chosen.url.endswith(f"/export/?campaign={campaign.pk}")
    form = client.get(chosen.url)
    assert form.status_code == 200 and f'value="{campaign.pk}" selected'.encode() in form.content
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            chosen.url,
            {
                "formats": ["nnunet", "coco", "masks"],
                "contents": ["images", "fused", "raters", "probability"],
                "campaign": campaign.pk,
                "label_classes": [white.pk],
                "nnunet_id": 42,
            },
        )
    job = ExportJob.objects.get()
    assert started.status_code == 302 and job.status == ExportJob.Status.DONE, job.error
    download = client.get(f"/admin/annotations/exportjob/{job.pk}/download/")
    assert download.status_code == 200
    root = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as zf:
        zf.extractall(root)
    fused = {f.task.image.slice_index: rle.decode(f.mask) for f in FusedLabel.objects.filter(task__label_class=white)}
    assert len(fused) == 6

    # nnU-Net v2: its own integrity check, and the labels are the fused labels.
    folder = root / "nnunet" / "Dataset042_MNI_ICBM152_brain_demo"
    monkeypatch.setenv("nnUNet_raw", str(root / "nnunet"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "res"))
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "white matter": 1} and dataset_json["numTraining"] == 6
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted((folder / "labelsTr").iterdir())]
    assert sorted(int(m.sum()) for m in labels) == sorted(int(m.sum()) for m in fused.values())
    spacing = sitk.ReadImage(str(folder / "imagesTr" / "case_00001_0000.nii.gz")).GetSpacing()
    assert spacing == pytest.approx((1.0, 1.0))  # the MNI template's 1 mm grid, kept
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == 1  # one volume: one group, so one fold holds every slice

    # COCO: pycocotools loads it and every mask decodes to a fused label.
    coco = COCO(str(root / "coco" / "annotations" / "fused.json"))
    decoded = [mask_utils.decode(a["segmentation"]).astype(bool) for a in coco.loadAnns(coco.getAnnIds())]
    assert len(decoded) == 6
    assert sorted(int(m.sum()) for m in decoded) == sorted(int(m.sum()) for m in fused.values())
    raters = COCO(str(root / "coco" / "annotations" / "raters.json"))
    assert len(raters.getAnnIds()) == 18

    # Masks: NIfTI (the source is a NIfTI volume), paired with the images by name.
    images = sorted(p.name for p in (root / "masks" / "images").iterdir())
    masks = sorted(p.name for p in (root / "masks" / "fused" / "white_matter").iterdir())
    assert images == masks and all(n.endswith(".nii.gz") for n in masks)
    probability = sorted((root / "masks" / "probability" / "white_matter").iterdir())
    assert len(probability) == 6
    card = json.loads((root / "datacard.json").read_text())
    assert card["datasheet"]["collection_process"]["raters"] == 3
    assert card["export"]["filters"]["campaign"] == campaign.pk
    text = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert not any(v.username.encode() in text or v.pseudonym.encode() in text for v in volunteers)
