"""The demo dataset: real images that ship inside installed packages, with expert gold standards.

- nilearn's MNI ICBM152 2009a T1 template, axial slices, with its white- and grey-matter maps
  (probability >= 0.5) as the gold standard of the "white matter" and "grey matter" tasks;
- pydicom's CT and MR test files (real DICOM headers, de-identified on import).

Loading is idempotent: users, datasets, images and gold standards are only created when missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accounts.models import Role, User
from accounts.services import user_ensure

from . import services
from .io import ReadOptions
from .io.nifti import volume_slices
from .io.samples import mni_path, pydicom_test_file
from .models import Dataset, GoldStandard, Task

MNI_DATASET = "MNI ICBM152 brain (demo)"
DICOM_DATASET = "pydicom CT and MR samples (demo)"
DEMO_PASSWORD = "crowdseg-demo"
DEMO_USERS = [  # username, role, staff
    ("admin", Role.STAFF, True),
    ("rachel", Role.RESEARCHER, False),
    ("tom", Role.TEACHER, False),
    ("alice", Role.VOLUNTEER, False),
    ("bob", Role.VOLUNTEER, False),
]
PYDICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "liver_1frame.dcm"]
GOLD_THRESHOLD = 128  # the nilearn maps store probability x 255


@dataclass
class DemoSummary:
    users: list[tuple[str, str, bool]]  # username, role, created
    images_created: int
    golds_created: int


def mni_gold_slices(count: int, options: ReadOptions) -> dict[int, dict[str, np.ndarray]]:
    """``count`` axial slice indices spread over the brain, each with its gold masks (H, W) bool."""
    return {i: masks for i, masks in _mni_slices(count, 0, options)[0].items()}


def _mni_slices(count: int, unlabelled: int, options: ReadOptions) -> tuple[dict[int, dict[str, np.ndarray]], set[int]]:
    """``count`` slices with gold masks and ``unlabelled`` others between them, all spread over the brain."""
    maps = {}
    for label, kind in (("white matter", "wm"), ("grey matter", "gm")):
        slices, _ = volume_slices(mni_path(kind).read_bytes(), mni_path(kind).name, options)
        maps[label] = {info.index: plane >= GOLD_THRESHOLD for info, plane in slices}
    wm = maps["white matter"]
    # Slices where white matter is plentiful enough to be a fair task on a phone.
    candidates = sorted(i for i, m in wm.items() if m.sum() >= 1500)
    chosen = [candidates[round(k)] for k in np.linspace(0, len(candidates) - 1, count)] if candidates else []
    rest = [i for i in candidates if i not in chosen]
    others = {rest[round(k)] for k in np.linspace(0, len(rest) - 1, unlabelled)} if rest and unlabelled else set()
    return {i: {label: maps[label][i] for label in maps} for i in chosen}, others


def demo_load(*, mni_slices: int = 24, mni_unlabelled: int = 24) -> DemoSummary:
    """Demo users, ``mni_slices`` MNI slices with expert golds plus ``mni_unlabelled`` without
    (what the crowd is for), and the pydicom files."""
    users = []
    for username, role, staff in DEMO_USERS:
        _, created = user_ensure(username=username, password=DEMO_PASSWORD, role=role, superuser=staff)
        users.append((username, role, created))
    owner = User.objects.get(username="rachel")
    images_created = golds_created = 0

    options = ReadOptions(nifti_axis="axial")
    mni = _dataset(
        MNI_DATASET,
        owner,
        ["white matter", "grey matter"],
        "Axial slices of the MNI ICBM152 2009a T1 template; gold standards from its tissue maps.",
    )
    golds, unlabelled = _mni_slices(mni_slices, mni_unlabelled, options)
    result = services.images_import(
        dataset=mni,
        sources=[services.PathSource(mni_path("t1"))],
        options=options,
        keep=lambda image: image.slice is not None and (image.slice.index in golds or image.slice.index in unlabelled),
    )
    images_created += len(result.created)
    tasks = Task.objects.filter(image__dataset=mni, gold__isnull=True).select_related("image", "label_class")
    for task in tasks:
        masks = golds.get(task.image.slice_index)
        if masks is None or task.label_class.name not in masks:
            continue
        services.gold_standard_set(
            task=task, mask=masks[task.label_class.name], created_by=None, source=GoldStandard.Source.IMPORT
        )
        golds_created += 1

    dicom = _dataset(
        DICOM_DATASET,
        owner,
        ["structure of interest"],
        "Real CT and MR DICOM files from pydicom's test data, de-identified on import.",
    )
    result = services.images_import(
        dataset=dicom,
        sources=[services.PathSource(pydicom_test_file(n)) for n in PYDICOM_FILES],
        options=ReadOptions(ct_window="soft_tissue"),
    )
    images_created += len(result.created)
    return DemoSummary(users=users, images_created=images_created, golds_created=golds_created)


def _dataset(name: str, owner: User, label_classes: list[str], description: str) -> Dataset:
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        dataset = services.dataset_create(name=name, owner=owner, description=description, label_classes=label_classes)
    return dataset
