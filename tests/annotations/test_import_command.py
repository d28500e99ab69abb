"""manage.py import_images: real files in, clear errors out, nothing half-imported."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command

from annotations.io.samples import pydicom_test_file
from annotations.models import Dataset, Image, Task
from tests.annotations.test_datasets_api import stored_files
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


def nifti_bytes(shape=(12, 10, 6), gz: bool = False) -> bytes:
    data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    img = nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0]))
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_images", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "a.png").write_bytes(png_bytes(seed=1))
    (tmp_path / "volume.nii.gz").write_bytes(nifti_bytes(gz=True))
    (tmp_path / "ct.dcm").write_bytes(pydicom_test_file("CT_small.dcm").read_bytes())
    return tmp_path


def test_it_imports_a_folder_of_mixed_formats_with_progress(alice, files):
    out, err = run(str(files), "--dataset", "mixed", "--owner", "alice", "--label-class", "liver")
    dataset = Dataset.objects.get(name="mixed")
    # 1 PNG + 6 axial slices + 1 CT slice
    assert dataset.images.count() == 8
    assert Task.objects.filter(image__dataset=dataset).count() == 8
    assert set(dataset.images.values_list("source_format", flat=True)) == {"png", "nifti", "dicom"}
    assert "8 images imported" in out
    assert "3/3" in err  # the progress bar counted every file
    slices = dataset.images.filter(source_format="nifti").order_by("slice_index")
    assert [s.slice_index for s in slices] == list(range(6))
    assert {(s.slice_axis, s.slice_count) for s in slices} == {("axial", 6)}


def test_running_it_twice_imports_nothing_new(alice, files):
    run(str(files), "--dataset", "mixed", "--owner", "alice")
    out, _ = run(str(files), "--dataset", "mixed")
    assert "0 images imported, 8 already present" in out
    assert Image.objects.count() == 8


def test_axis_option_slices_in_another_plane(alice, files):
    run(str(files / "volume.nii.gz"), "--dataset", "cor", "--owner", "alice", "--axis", "coronal")
    assert Image.objects.filter(slice_axis="coronal").count() == 10


def bad_files(tmp_path: Path) -> dict[str, bytes]:
    ct = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ct.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"  # no decoder knows it
    unsupported = io.BytesIO()
    ct.save_as(unsupported, enforce_file_format=True)
    # A volume header declaring 64 GB of voxels, in a 100-byte gzip file.
    header = nib.Nifti1Header()
    header.set_data_shape((4000, 4000, 4000))
    header.set_data_dtype(np.uint8)
    return {
        "corrupt.dcm": b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 10,
        "unsupported.dcm": unsupported.getvalue(),
        "bomb.nii.gz": gzip.compress(header.binaryblock + b"\x00" * 4 + b"\x00" * 1000),
        "fourd.nii": nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.int16), np.eye(4)).to_bytes(),
        "truncated.png": png_bytes(seed=2)[:80],
        "notes.txt": b"patient: John Doe",
    }


@pytest.mark.parametrize(
    "name", ["corrupt.dcm", "unsupported.dcm", "bomb.nii.gz", "fourd.nii", "truncated.png", "notes.txt"]
)
def test_a_bad_file_names_itself_and_nothing_is_imported(alice, files, name, settings):
    (files / name).write_bytes(bad_files(files)[name])
    before = stored_files(settings)
    with pytest.raises(CommandError) as excinfo:
        run(str(files), "--dataset", "mixed", "--owner", "alice", "--label-class", "liver")
    assert name in str(excinfo.value)
    assert "nothing was imported" in str(excinfo.value)
    assert not Dataset.objects.exists() and not Image.objects.exists() and not Task.objects.exists()
    assert stored_files(settings) == before


def test_skip_bad_imports_the_good_files_and_lists_the_bad(alice, files):
    (files / "fourd.nii").write_bytes(bad_files(files)["fourd.nii"])
    with pytest.raises(CommandError) as excinfo:
        run(str(files), "--dataset", "mixed", "--owner", "alice", "--skip-bad")
    assert "fourd.nii" in str(excinfo.value) and "4-D" in str(excinfo.value)
    assert Image.objects.count() == 8


def test_it_needs_an_owner_for_a_new_dataset(files):
    with pytest.raises(CommandError, match="--owner"):
        run(str(files), "--dataset", "new")


def test_it_names_a_missing_path(alice):
    with pytest.raises(CommandError, match="no-such-dir"):
        run("/no-such-dir", "--dataset", "x", "--owner", "alice")
