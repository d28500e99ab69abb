"""nnU-Net v2 raw dataset: ``nnunet/DatasetNNN_<name>/{dataset.json, imagesTr, labelsTr, imagesTs}``.

Every case is a 2-D slice written as NIfTI with its spacing (``{case}_0000.nii.gz``, one file per
channel; ``{case}.nii.gz`` the label map), read by ``SimpleITKIO`` (``overwrite_image_reader_writer``
in ``dataset.json``: PNG would lose the spacing). Labels are consecutive integers, background 0,
one per exported class in order; where classes overlap, the later class wins. A case with a fused
label for every class is a training case; the others go to ``imagesTs``.

With ``ignore_above_bits``, pixels whose fused uncertainty (binary entropy of the probability map,
bits, any class) exceeds it get the ``ignore`` label (the highest value, as nnU-Net requires):
nnU-Net then neither trains on nor scores them. ``splits_final.json`` holds ``folds``
cross-validation folds in which all slices of one volume (``ExportCase.group``) share a fold;
copy it to ``nnUNet_preprocessed/DatasetNNN_<name>/`` to use it.
"""

from __future__ import annotations

import json

import numpy as np

from annotations.fusion.engine import entropy_bits

from .archive import ZipWriter
from .codecs import nifti_gz
from .types import ExportCase, ExportSpec, slug

RGB_CHANNELS = ("red", "green", "blue")


def dataset_folder(spec: ExportSpec) -> str:
    return f"Dataset{spec.nnunet_id:03d}_{slug(spec.name)}"


class NnUNetWriter:
    def __init__(self, sink: ZipWriter, spec: ExportSpec, *, modality: str, prefix: str = "nnunet/"):
        self.sink, self.spec = sink, spec
        self.root = prefix + dataset_folder(spec)
        self.modality = modality
        self.training: list[tuple[str, str]] = []  # (case id, group)
        self.test_cases = 0
        self.channels: int | None = None

    def add(self, case: ExportCase) -> None:
        channels = 3 if case.is_rgb else 1
        if self.channels is None:
            self.channels = channels
        elif channels != self.channels:
            raise ValueError(f"{case.case_id} has {channels} channels, earlier cases {self.channels}")
        labelled = all(c.index in case.fused for c in self.spec.classes)
        folder = "imagesTr" if labelled else "imagesTs"
        planes = [case.image[..., k] for k in range(3)] if case.is_rgb else [case.image]
        for k, plane in enumerate(planes):
            self.sink.write(f"{self.root}/{folder}/{case.case_id}_{k:04d}.nii.gz", nifti_gz(plane, case.spacing))
        if labelled:
            self.sink.write(f"{self.root}/labelsTr/{case.case_id}.nii.gz", nifti_gz(self.label_map(case), case.spacing))
            self.training.append((case.case_id, case.group or case.case_id))
        else:
            self.test_cases += 1

    def label_map(self, case: ExportCase) -> np.ndarray:
        """(H, W) uint8: 0 background, class indices, ``ignore`` where the fusion is unsure."""
        labels = np.zeros(case.shape, np.uint8)
        for c in self.spec.classes:
            labels[case.fused[c.index]] = c.index
        threshold = self.spec.ignore_above_bits
        if threshold is not None:
            for c in self.spec.classes:
                probability = case.probability.get(c.index)
                if probability is not None:
                    labels[entropy_bits(probability) > threshold] = self.ignore_label
        return labels

    @property
    def ignore_label(self) -> int:
        return len(self.spec.classes) + 1

    def finish(self) -> dict:
        labels = {"background": 0, **{c.name: c.index for c in self.spec.classes}}
        if self.spec.ignore_above_bits is not None:
            labels["ignore"] = self.ignore_label
        if self.channels == 3:
            channel_names = {str(k): name for k, name in enumerate(RGB_CHANNELS)}
        else:
            channel_names = {"0": self.modality}
        dataset_json = {
            "channel_names": channel_names,
            "labels": labels,
            "numTraining": len(self.training),
            "file_ending": ".nii.gz",
            "overwrite_image_reader_writer": "SimpleITKIO",
            "name": self.spec.name,
            "description": "Exported by crowdseg: fused crowd labels; see datacard.json at the archive's root",
        }
        self.sink.write(f"{self.root}/dataset.json", json.dumps(dataset_json, indent=2))
        self.sink.write(f"{self.root}/splits_final.json", json.dumps(grouped_folds(self.training, self.spec.folds)))
        return {"training_cases": len(self.training), "test_cases": self.test_cases, "folder": self.root}


def grouped_folds(cases: list[tuple[str, str]], folds: int) -> list[dict]:
    """nnU-Net's ``splits_final.json``: ``folds`` train/val splits where each group (volume,
    patient) lies wholly in one validation fold. Groups are dealt largest first to the fold with
    the fewest cases so far (ties: lowest fold), which balances folds and is deterministic.
    Fewer groups than folds give one fold per group."""
    groups: dict[str, list[str]] = {}
    for case_id, group in cases:
        groups.setdefault(group, []).append(case_id)
    folds = min(folds, len(groups))
    members: list[list[str]] = [[] for _ in range(folds)]
    for group in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        smallest = min(range(folds), key=lambda k: (len(members[k]), k))
        members[smallest].extend(groups[group])
    every = [case_id for case_id, _ in cases]
    splits = []
    for val in members:
        held = set(val)
        splits.append({"train": [c for c in every if c not in held], "val": sorted(val)})
    return splits
