"""The export formats, without a database: each is read back by its ecosystem's own reader
(nnU-Net's dataset check, pycocotools, highdicom/pydicom, SimpleITK/nibabel)."""

from __future__ import annotations

import errno
import io
import json
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from annotations.exports import (
    CardFacts,
    ExportCase,
    ExportClass,
    ExportError,
    ExportSpec,
    SyntheticCase,
    archive,
    export_write,
)
from annotations.exports.nnunet import grouped_folds
from annotations.io import ReadOptions, read_images
from annotations.io.samples import pydicom_test_file

CLASSES = (ExportClass(1, "white matter"), ExportClass(2, "grey matter"))


def facts(**overrides) -> CardFacts:
    values = {
        "name": "brain",
        "description": "test slices",
        "licence": "CC-BY-4.0",
        "source_formats": {"nifti": 6},
        "deidentification": {"dicom": "none here"},
        "exported_at": "2026-01-01T00:00:00+00:00",
        "crowdseg_version": "0.1.0",
        "formats": [],
        "contents": [],
        "filters": {},
        "classes": [{"index": c.index, "name": c.name} for c in CLASSES],
        "cases": 0,
        "training_cases": 0,
        "raters": 3,
        "raters_per_image": {"min": 3, "median": 3, "mean": 3, "max": 3},
        "reliability": [],
        "fusion": {"method": "test"},
        "gold_count": 0,
        "anchoring_share": 0.2,
        "suggestion_models": [],
        "synthetic": {"count": 0},
        "validation": None,
    }
    return CardFacts(**{**values, **overrides})


def brain_cases(volumes: int = 2, slices: int = 3, labelled_all: bool = True, source_format: str = "nifti"):
    """``volumes`` x ``slices`` cases with two non-overlapping classes, probabilities and 3 raters;
    the last case lacks grey matter unless ``labelled_all``."""
    rng = np.random.default_rng(7)
    cases = []
    for v in range(volumes):
        for s in range(slices):
            h, w = 40, 52
            image = rng.integers(0, 256, (h, w), dtype=np.uint8)
            wm = np.zeros((h, w), bool)
            wm[5 + s : 20, 8 : 30 + v] = True
            gm = np.zeros((h, w), bool)
            gm[25:35, 10 : 40 - s] = True
            probability_wm = np.where(wm, 0.9, 0.05).astype(np.float32)
            probability_wm[5 + s, 8:12] = 0.5  # unsure pixels
            probability_gm = np.where(gm, 0.95, 0.02).astype(np.float32)
            raters = {1: {f"r{k:012x}": np.roll(wm, k, axis=1) for k in range(3)}}
            case = ExportCase(
                case_id=f"case_{len(cases) + 1:05d}",
                image=image,
                spacing=(1.5, 0.75),
                group=f"volume-{v}",
                source=f"nifti-{v:016x}",
                source_format=source_format,
                fused={1: wm, 2: gm},
                probability={1: probability_wm, 2: probability_gm},
                confidence={1: 0.9, 2: 0.95},
                golds={1: wm} if s == 0 else {},
                raters=raters,
            )
            cases.append(case)
    if not labelled_all:
        del cases[-1].fused[2]
    return cases


def spec(**overrides) -> ExportSpec:
    values = {"name": "Brain tissue", "classes": CLASSES, "formats": ("nnunet",), "contents": ("images", "fused")}
    return ExportSpec(**{**values, **overrides})


def unzip(path, into):
    with zipfile.ZipFile(path) as zf:
        zf.extractall(into)
        return zf.namelist()


def test_nnunet_export_passes_nnunets_own_dataset_check(tmp_path, monkeypatch):
    cases = brain_cases(labelled_all=False)
    target = tmp_path / "out" / "export.zip"
    outputs = export_write(
        target, spec(ignore_above_bits=0.9), iter(cases), facts=facts(), reliability_csv="", modality="MR"
    )
    assert outputs["nnunet"]["training_cases"] == 5 and outputs["nnunet"]["test_cases"] == 1
    unzip(target, tmp_path / "raw")
    folder = tmp_path / "raw" / "nnunet" / "Dataset501_Brain_tissue"
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw" / "nnunet"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "res"))
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem

    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "white matter": 1, "grey matter": 2, "ignore": 3}
    assert dataset_json["numTraining"] == 5
    assert dataset_json["overwrite_image_reader_writer"] == "SimpleITKIO"
    assert dataset_json["channel_names"] == {"0": "MR"}
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["case_00006_0000.nii.gz"]
    # Image and label read back by SimpleITK: the pixels, the spacing (x = columns), the labels.
    image = sitk.ReadImage(str(folder / "imagesTr" / "case_00002_0000.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(image), cases[1].image)
    assert image.GetSpacing() == pytest.approx((0.75, 1.5))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / "case_00002.nii.gz")))
    expected = np.where(cases[1].fused[2], 2, np.where(cases[1].fused[1], 1, 0))
    unsure = cases[1].probability[1] == 0.5
    assert (labels[unsure] == 3).all() and np.array_equal(labels[~unsure], expected[~unsure])
    # Slices of one volume share a fold.
    splits = json.loads((folder / "splits_final.json").read_text())
    for fold in splits:
        assert {c[:10] for c in fold["val"]} in (
            {"case_00001", "case_00002", "case_00003"},
            {"case_00004", "case_00005"},
        )


def test_grouped_folds_keep_groups_together_and_cover_every_case():
    cases = [(f"c{i}", f"g{i // 4}") for i in range(40)]
    splits = grouped_folds(cases, 5)
    assert len(splits) == 5
    assert sorted(c for s in splits for c in s["val"]) == sorted(c for c, _ in cases)
    for s in splits:
        assert not set(s["train"]) & set(s["val"])
        groups = {c: g for c, g in cases}
        val_groups = {groups[c] for c in s["val"]}
        assert not any(groups[c] in val_groups for c in s["train"])


def test_coco_export_loads_in_pycocotools_and_every_mask_decodes(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    cases = brain_cases()
    target = tmp_path / "export.zip"
    export_write(
        target,
        spec(formats=("coco",), contents=("images", "fused", "gold", "raters")),
        iter(cases),
        facts=facts(),
        reliability_csv="",
        modality="MR",
    )
    unzip(target, tmp_path / "x")
    fused = COCO(str(tmp_path / "x" / "coco" / "annotations" / "fused.json"))
    assert len(fused.getImgIds()) == 6 and len(fused.getAnnIds()) == 12
    assert {c["name"] for c in fused.loadCats(fused.getCatIds())} == {"white matter", "grey matter"}
    for ann in fused.loadAnns(fused.getAnnIds()):
        assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
        image = fused.loadImgs(ann["image_id"])[0]
        case = cases[ann["image_id"] - 1]
        decoded = mask_utils.decode(ann["segmentation"]).astype(bool)
        assert np.array_equal(decoded, case.fused[ann["category_id"]])
        assert np.array_equal(fused.annToMask(ann).astype(bool), decoded)
        assert ann["area"] == float(decoded.sum())
        assert ann["bbox"] == list(mask_utils.toBbox(ann["segmentation"]))
        picture = np.asarray(PILImage.open(tmp_path / "x" / "coco" / "images" / image["file_name"]))
        assert np.array_equal(picture, case.image)
    raters = COCO(str(tmp_path / "x" / "coco" / "annotations" / "raters.json"))
    anns = raters.loadAnns(raters.getAnnIds())
    assert len(anns) == 18 and {a["rater"] for a in anns} == {f"r{k:012x}" for k in range(3)}
    for ann in anns:
        k = int(ann["rater"][1:], 16)
        assert np.array_equal(raters.annToMask(ann).astype(bool), np.roll(cases[ann["image_id"] - 1].fused[1], k, 1))
    gold = COCO(str(tmp_path / "x" / "coco" / "annotations" / "gold.json"))
    assert len(gold.getAnnIds()) == 2


def test_masks_pair_with_their_images_and_read_back(tmp_path):
    nifti_cases = brain_cases(volumes=1, slices=2)
    png_cases = brain_cases(volumes=1, slices=1, source_format="png")
    png_cases[0].case_id = "case_00003"
    target = tmp_path / "export.zip"
    export_write(
        target,
        spec(formats=("masks",), contents=("images", "fused", "probability", "uncertainty", "raters", "gold")),
        iter(nifti_cases + png_cases),
        facts=facts(),
        reliability_csv="",
        modality="MR",
    )
    names = unzip(target, tmp_path / "x")
    root = tmp_path / "x" / "masks"
    # NIfTI sources stay NIfTI (nibabel reads (W, H) with the spacing), the PNG source is PNG.
    volume = nib.load(root / "fused" / "white_matter" / "case_00001.nii.gz")
    assert np.array_equal(np.asarray(volume.dataobj).T.astype(bool), nifti_cases[0].fused[1])
    assert volume.header.get_zooms() == pytest.approx((0.75, 1.5))
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "images" / "case_00002.nii.gz")))
    assert np.array_equal(image, nifti_cases[1].image)
    assert np.array_equal(np.asarray(PILImage.open(root / "images" / "case_00003.png")), png_cases[0].image)
    grey = np.asarray(PILImage.open(root / "fused" / "grey_matter" / "case_00003.png"))
    assert np.array_equal(grey == 255, png_cases[0].fused[2]) and set(np.unique(grey)) <= {0, 255}
    probability = np.asarray(PILImage.open(root / "probability" / "white_matter" / "case_00003.png"))
    assert np.abs(probability / 255 - png_cases[0].probability[1]).max() <= 0.5 / 255 + 1e-6
    uncertainty = np.asarray(PILImage.open(root / "uncertainty" / "white_matter" / "case_00003.png"))
    assert uncertainty[5, 8] == 255  # P = 0.5: one full bit
    rater = np.asarray(PILImage.open(root / "raters" / "white_matter" / "r000000000002" / "case_00003.png"))
    assert np.array_equal(rater == 255, np.roll(png_cases[0].fused[1], 2, axis=1))
    assert "masks/gold/white_matter/case_00001.nii.gz" in names
    assert not any("gold" in n and "case_00002" in n for n in names)  # only slice 0 has a gold
    # Every export has its data card and tables.
    card = json.loads((tmp_path / "x" / "datacard.json").read_text())
    assert card["datasheet"]["composition"]["images"] == 3 and card["licence"] == "CC-BY-4.0"
    assert "rai:dataCollection" in card["croissant_rai"]
    assert (tmp_path / "x" / "README.md").read_text().startswith("# brain")
    assert (tmp_path / "x" / "cases.csv").read_text().splitlines()[1].startswith("case_00001,volume-0,")


def dicom_case(name: str = "CT_small.dcm") -> ExportCase:
    path = pydicom_test_file(name)
    decoded = read_images(path.read_bytes(), path.name, ReadOptions(), uid_key=b"test-key")[0]
    h, w = decoded.pixels.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[10:30, 12:40] = True
    other = np.zeros((h, w), bool)
    other[40:50, 5:20] = True
    probability = np.where(mask, 0.8, 0.1).astype(np.float32)
    return ExportCase(
        case_id="case_00001",
        image=decoded.pixels[..., 0],
        source_format="dicom",
        dicom=decoded.metadata["dicom"],
        fused={1: mask, 2: other},
        probability={1: probability},
    )


def test_dicom_seg_reads_back_with_highdicom_and_pydicom(tmp_path):
    import highdicom as hd

    case = dicom_case()
    target = tmp_path / "export.zip"
    export_write(
        target,
        spec(formats=("dicom-seg",), contents=("fused", "probability")),
        iter([case]),
        facts=facts(),
        reliability_csv="",
        modality="CT",
    )
    unzip(target, tmp_path / "x")
    binary = hd.seg.segread(tmp_path / "x" / "dicom-seg" / "case_00001_fused.dcm")
    assert binary.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert [binary.get_segment_description(n).segment_label for n in (1, 2)] == ["white matter", "grey matter"]
    source_uid = case.dicom["00080018"]["Value"][0]
    assert binary.get_source_image_uids()[0][2] == source_uid
    pixels = binary.get_pixels_by_source_instance([source_uid], combine_segments=False)
    assert np.array_equal(pixels[0, ..., 0].astype(bool), case.fused[1])
    assert np.array_equal(pixels[0, ..., 1].astype(bool), case.fused[2])
    raw = pydicom.dcmread(tmp_path / "x" / "dicom-seg" / "case_00001_fused.dcm")
    assert raw.Modality == "SEG" and raw.PatientName == "" and raw.PatientID == ""  # nothing re-identifies
    fractional = hd.seg.segread(tmp_path / "x" / "dicom-seg" / "case_00001_probability.dcm")
    assert fractional.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    maps = fractional.get_pixels_by_source_instance([source_uid], combine_segments=False, rescale_fractional=True)
    assert np.abs(maps[0, ..., 0] - case.probability[1]).max() <= 1 / 255 + 1e-6


def test_dicom_seg_of_a_png_image_is_refused_and_leaves_nothing(tmp_path):
    case = brain_cases(volumes=1, slices=1, source_format="png")[0]
    with pytest.raises(ExportError, match="DICOM SEG needs images imported from DICOM"):
        export_write(
            tmp_path / "e.zip",
            spec(formats=("dicom-seg",)),
            iter([case]),
            facts=facts(),
            reliability_csv="",
            modality="MR",
        )
    assert list(tmp_path.iterdir()) == []


def test_an_empty_selection_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(ExportError, match="selection is empty"):
        export_write(tmp_path / "e.zip", spec(), iter([]), facts=facts(), reliability_csv="", modality="MR")
    assert list(tmp_path.iterdir()) == []


class FillingDisk(io.FileIO):
    """A file on a disk that is full after ``room`` bytes."""

    room = 4_000

    def write(self, data):
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_a_disk_that_fills_mid_export_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "open_for_writing", lambda path: FillingDisk(path, "xb"))
    with pytest.raises(OSError) as failure:
        export_write(tmp_path / "e.zip", spec(), iter(brain_cases()), facts=facts(), reliability_csv="", modality="MR")
    assert failure.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_cancelling_through_progress_leaves_no_partial_file(tmp_path, monkeypatch):
    from annotations.exports import writer

    monkeypatch.setattr(writer, "PROGRESS_EVERY", 2)

    class Stop(Exception):
        pass

    def progress(done):
        raise Stop

    with pytest.raises(Stop):
        export_write(
            tmp_path / "e.zip", spec(), iter(brain_cases()), facts=facts(), reliability_csv="", modality="MR",
            progress=progress,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_synthetic_pairs_go_to_their_own_folder_flagged(tmp_path):
    pair = SyntheticCase(
        "synthetic_00001", np.zeros((16, 16), np.uint8), {1: np.eye(16, dtype=bool)}, "0123456789ab", 7
    )
    target = tmp_path / "e.zip"
    export_write(
        target,
        spec(contents=("images", "fused", "synthetic")),
        iter(brain_cases(volumes=1, slices=1)),
        facts=facts(),
        reliability_csv="",
        modality="MR",
        synthetic=[pair],
    )
    names = unzip(target, tmp_path / "x")
    assert "synthetic/images/synthetic_00001.png" in names
    assert "synthetic/masks/white_matter/synthetic_00001.png" in names
    assert not any("synthetic_00001" in n for n in names if n.startswith("nnunet/"))
    flags = json.loads((tmp_path / "x" / "synthetic" / "synthetic.json").read_text())
    assert flags == [{"case": "synthetic_00001", "synthetic": True, "generator_version": "0123456789ab", "seed": 7}]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"formats": ("tiff",)}, "unknown format"),
        ({"contents": ("everything",)}, "unknown content"),
        ({"classes": ()}, "no label class"),
        ({"nnunet_id": 1000}, "1..999"),
        ({"ignore_above_bits": 1.5}, "in bits"),
    ],
)
def test_bad_specs_say_what_is_wrong(overrides, message):
    with pytest.raises(ExportError, match=message):
        spec(**overrides)
