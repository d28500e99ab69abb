"""Real medical images that ship inside installed packages (nothing is downloaded).

- nilearn's MNI ICBM152 2009a T1 template with its grey/white-matter probability maps;
- pydicom's bundled DICOM test files.

Found without importing nilearn (which imports scikit-learn: seconds of start-up).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from . import ReadOptions, read_images


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def mni_path(kind: str) -> Path:
    """Path of nilearn's bundled ICBM152 2009a map: kind is "t1", "wm" or "gm"."""
    if kind not in ("t1", "wm", "gm"):
        raise ValueError(f"kind must be t1, wm or gm, not {kind!r}")
    return _package_dir("nilearn") / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"


def pydicom_test_file(name: str) -> Path:
    """A DICOM file from pydicom's bundled test data."""
    path = _package_dir("pydicom") / "data" / "test_files" / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not among pydicom's bundled test files")
    return path


def sample_images() -> list[np.ndarray]:
    """A few real model inputs ((H, W, 3) uint8): two MNI axial slices and a CT slice."""
    mni = read_images(mni_path("t1").read_bytes(), mni_path("t1").name, ReadOptions(), uid_key=b"samples")
    ct = read_images(pydicom_test_file("CT_small.dcm").read_bytes(), "CT_small.dcm", uid_key=b"samples")
    count = len(mni)
    return [mni[count // 2].pixels, mni[count // 3].pixels, ct[0].pixels]
