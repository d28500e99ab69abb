"""The demo data: real images with gold standards, loaded idempotently."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from django.core.management import call_command

from accounts.models import User
from annotations.demo import DEMO_PASSWORD, DICOM_DATASET, MNI_DATASET
from annotations.io.samples import mni_path
from annotations.models import Dataset, GoldStandard, Image, Task
from gamification.demo import DEMO_CAMPAIGN, DEMO_PRACTICE_CAMPAIGN
from gamification.models import Campaign, Classroom, PracticeTask
from inference.engine import rle

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (User, Dataset, Image, Task, GoldStandard, Campaign))


def test_demo_loads_real_images_with_golds_and_twice_changes_nothing():
    out = io.StringIO()
    call_command("load_demo", "--mni-slices", "4", "--mni-unlabelled", "2", stdout=out)
    assert "password for all" in out.getvalue() and "rachel" in out.getvalue()
    first = counts()
    mni = Dataset.objects.get(name=MNI_DATASET)
    assert mni.images.count() == 6
    assert GoldStandard.objects.filter(task__image__dataset=mni).count() == 8  # white + grey matter of 4
    assert Dataset.objects.get(name=DICOM_DATASET).images.filter(modality="CT").exists()
    campaign = Campaign.objects.get(name=DEMO_CAMPAIGN)
    assert campaign.dataset == mni and campaign.label_classes.count() == 2
    # Tom's class, with pupils who sign in with the demo password, and its practice campaign.
    classroom = Classroom.objects.get(name="Year 9 Biology", teacher__username="tom")
    assert classroom.members.count() == 6
    pupil = classroom.members.get(real_name="Ada").pupil
    assert pupil.role == "pupil" and pupil.email == "" and pupil.check_password(DEMO_PASSWORD)
    (assignment,) = classroom.assignments.all()
    assert assignment.campaign.name == DEMO_PRACTICE_CAMPAIGN
    assert PracticeTask.objects.filter(task__label_class__campaigns=assignment.campaign).count() == 4
    assert "Year 9 Biology" in out.getvalue()

    call_command("load_demo", "--mni-slices", "4", "--mni-unlabelled", "2", stdout=io.StringIO())
    assert counts() == first


def test_demo_gold_is_the_white_matter_map_of_the_same_slice():
    call_command("load_demo", "--mni-slices", "3", stdout=io.StringIO())
    gold = GoldStandard.objects.filter(task__label_class__name="white matter").select_related("task__image").first()
    image = gold.task.image
    mask = rle.decode(gold.mask)
    assert mask.shape == (image.height, image.width)
    # Recompute from the volume: RAS volume, axial slice, shown with anterior up and right on the left.
    wm = np.asarray(nib.as_closest_canonical(nib.load(mni_path("wm"))).dataobj)[:, :, image.slice_index]
    # wm is indexed [x: left->right, y: posterior->anterior]; the display has rows from anterior
    # to posterior and columns from the patient's right to left.
    expected = wm.T[::-1, ::-1] >= 128
    assert np.array_equal(mask, expected)
