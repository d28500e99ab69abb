"""NIfTI reader: orientation, display convention, safety limits, intensity, hygiene (no Django).

The synthetic "patient" is a small RAS+ volume with markers in known corners. The same
physical object is written with several affines (RAS, LPS, PSR, a tilted RAS); every file must
give the same slices, and the markers must land where the radiological convention puts them.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import tracemalloc
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from annotations.io import ImageReadError, ReadOptions, read_images
from annotations.io.nifti import read_nifti, volume_slices

NX, NY, NZ = 5, 6, 7  # voxels along R, A, S of the canonical object
VOX = (1.0, 2.0, 3.0)  # mm
ORIGIN = (-10.0, 20.0, 5.0)  # mm, world position of canonical voxel (0, 0, 0)
RAS_MARK, LAS_MARK, RPI_MARK = 1000, 900, 800  # right-anterior-superior, left-ant-sup, right-post-inf
KEY = b"test-key"


def ras_object() -> np.ndarray:
    vol = np.random.default_rng(0).integers(1, 50, (NX, NY, NZ)).astype(np.int16)
    vol[NX - 1, NY - 1, NZ - 1] = RAS_MARK
    vol[0, NY - 1, NZ - 1] = LAS_MARK
    vol[NX - 1, 0, 0] = RPI_MARK
    return vol


def _affine(columns: list[tuple[float, float, float]], offset: tuple[float, float, float]) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = np.array(columns, dtype=float).T
    aff[:3, 3] = offset
    return aff


def variants() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The same physical object as (data, affine) in several storage orientations."""
    ras = ras_object()
    vx, vy, vz = VOX
    ox, oy, oz = ORIGIN
    out = {"RAS": (ras, _affine([(vx, 0, 0), (0, vy, 0), (0, 0, vz)], ORIGIN))}
    # LPS (DICOM order): file axis 0 runs right->left, axis 1 anterior->posterior
    out["LPS"] = (
        ras[::-1, ::-1, :].copy(),
        _affine([(-vx, 0, 0), (0, -vy, 0), (0, 0, vz)], (ox + (NX - 1) * vx, oy + (NY - 1) * vy, oz)),
    )
    # PSR: file axis 0 runs to Posterior, axis 1 to Superior, axis 2 to Right;
    # data[i, j, k] = ras[k, NY-1-i, j]
    out["PSR"] = (
        np.transpose(ras[:, ::-1, :], (1, 2, 0)).copy(),
        _affine([(0, -vy, 0), (0, 0, vz), (vx, 0, 0)], (ox, oy + (NY - 1) * vy, oz)),
    )
    # RAS grid tilted by 10 degrees about S: still closest to RAS, sliced like RAS
    t = np.deg2rad(10)
    rot = np.array([[np.cos(t), -np.sin(t), 0, 0], [np.sin(t), np.cos(t), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    out["RAS-tilted"] = (ras, rot @ out["RAS"][1])
    return out


def nifti_bytes(data: np.ndarray, affine: np.ndarray, *, gz: bool = False, version: int = 1, **fields) -> bytes:
    cls = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    img = cls(data, affine)
    for key, value in fields.items():
        img.header[key] = value
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw


def expected_slice(axis: str, index: int) -> np.ndarray:
    """The radiological view, written out voxel by voxel from the convention."""
    ras = ras_object()
    if axis == "axial":  # rows: anterior at top; columns: patient right at image left
        return np.array([[ras[NX - 1 - c, NY - 1 - r, index] for c in range(NX)] for r in range(NY)])
    if axis == "coronal":  # rows: superior at top; columns: patient right at image left
        return np.array([[ras[NX - 1 - c, index, NZ - 1 - r] for c in range(NX)] for r in range(NZ)])
    # sagittal: rows: superior at top; columns: anterior at image left
    return np.array([[ras[index, NY - 1 - c, NZ - 1 - r] for c in range(NY)] for r in range(NZ)])


def test_variants_describe_one_object():
    """Guard for the fixtures: every variant puts each value at the same world position."""
    ras_data, ras_aff = variants()["RAS"]
    for name, (data, aff) in variants().items():
        if name == "RAS-tilted":
            continue
        for index in np.ndindex(data.shape):
            world = aff @ np.array([*index, 1.0])
            back = np.rint(np.linalg.solve(ras_aff, world)[:3]).astype(int)
            assert data[index] == ras_data[tuple(back)], name


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
@pytest.mark.parametrize("orientation", ["RAS", "LPS", "PSR", "RAS-tilted"])
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_every_orientation_gives_radiological_slices(orientation: str, axis: str, gz: bool):
    data, affine = variants()[orientation]
    blob = nifti_bytes(data, affine, gz=gz)
    slices, meta = volume_slices(blob, "v.nii.gz" if gz else "v.nii", ReadOptions(nifti_axis=axis))
    count = {"axial": NZ, "coronal": NY, "sagittal": NX}[axis]
    assert len(slices) == count
    for info, plane in slices:
        assert (info.axis, info.count) == (axis, count)
        assert plane.dtype == np.float32
        assert np.array_equal(plane, expected_slice(axis, info.index))
    assert meta["orientation_before"] == orientation[:3]
    assert meta["orientation_after"] == "RAS"
    assert meta["shape"] == [NX, NY, NZ]
    assert meta["voxel_size_mm"] == pytest.approx(list(VOX))
    assert meta["slice_axis"] == axis and meta["datatype"] == "int16"
    spacing = {"axial": [VOX[1], VOX[0]], "coronal": [VOX[2], VOX[0]], "sagittal": [VOX[2], VOX[1]]}
    assert meta["pixel_spacing_mm"] == pytest.approx(spacing[axis])
    json.dumps(meta)


def test_markers_where_the_convention_puts_them():
    data, affine = variants()["PSR"]
    blob = nifti_bytes(data, affine)

    def find(axis: str, value: int) -> tuple[int, int, int]:
        for info, plane in volume_slices(blob, "v.nii", ReadOptions(nifti_axis=axis))[0]:
            hits = np.argwhere(plane == value)
            if len(hits):
                return info.index, int(hits[0][0]), int(hits[0][1])
        raise AssertionError(value)

    # axial: seen from the feet; anterior at the top, patient right on the image left
    assert find("axial", RAS_MARK) == (NZ - 1, 0, 0)
    assert find("axial", LAS_MARK) == (NZ - 1, 0, NX - 1)
    assert find("axial", RPI_MARK) == (0, NY - 1, 0)  # posterior at the bottom
    # coronal: superior at the top, patient right on the image left
    assert find("coronal", RAS_MARK) == (NY - 1, 0, 0)
    assert find("coronal", LAS_MARK) == (NY - 1, 0, NX - 1)
    assert find("coronal", RPI_MARK) == (0, NZ - 1, 0)
    # sagittal: superior at the top, anterior on the image left
    assert find("sagittal", RAS_MARK) == (NX - 1, 0, 0)
    assert find("sagittal", LAS_MARK) == (0, 0, 0)
    assert find("sagittal", RPI_MARK) == (NX - 1, NZ - 1, NY - 1)


def test_reorientation_matches_nibabel_closest_canonical():
    data, affine = variants()["PSR"]
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    slices, meta = volume_slices(nifti_bytes(data, affine), "v.nii", ReadOptions())
    assert meta["shape"] == list(canonical.shape)
    assert np.array_equal(np.asarray(canonical.dataobj), ras_object())


def test_nifti2_reads_like_nifti1():
    data, affine = variants()["LPS"]
    one, _ = volume_slices(nifti_bytes(data, affine), "v.nii", ReadOptions())
    two, meta = volume_slices(nifti_bytes(data, affine, version=2), "v.nii", ReadOptions())
    assert meta["nifti_version"] == 2
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(one, two, strict=True))


def test_read_nifti_mr_shares_one_scale_across_slices():
    vol = np.zeros((4, 4, 3), np.float32)
    vol[:, :, 0] = 10.0
    vol[:, :, 1] = 100.0
    vol[:, :, 2] = np.linspace(0, 200, 16).reshape(4, 4)
    images = read_nifti(nifti_bytes(vol, np.eye(4)), "mr.nii", ReadOptions())
    assert [im.frame_key for im in images] == ["axial-0", "axial-1", "axial-2"]
    assert all(im.modality == "MR" and im.source_format == "nifti" for im in images)
    assert all(im.preprocessing == images[0].preprocessing for im in images)
    assert images[0].preprocessing["scope"] == "volume"
    # a per-slice normalisation would make both constant slices all zero
    assert 0 < images[0].pixels[0, 0, 0] < images[1].pixels[0, 0, 0] < 255
    assert images[2].slice is not None and images[2].slice.count == 3
    assert images[0].pixels.shape == (4, 4, 3)


@pytest.mark.parametrize("stored", ["int16", "uint16+inter"])
def test_read_nifti_ct_in_hu_is_windowed(stored: str):
    hu = np.full((6, 6, 2), 40, np.int16)
    hu[0] = -1000  # air
    hu[1] = 1200  # bone
    if stored == "int16":
        blob = nifti_bytes(hu, np.eye(4))
    else:  # unsigned storage with intercept -1024, as many scanners export
        img = nib.Nifti1Image((hu.astype(np.int32) + 1024).astype(np.uint16), np.eye(4))
        img.header.set_slope_inter(1.0, -1024.0)
        blob = img.to_bytes()
    images = read_nifti(blob, "ct.nii", ReadOptions(ct_window="soft_tissue"))
    assert all(im.modality == "CT" for im in images)
    rec = images[0].preprocessing
    assert rec["method"] == "ct_window" and rec["preset"] == "soft_tissue"
    grey = images[0].pixels[:, :, 0]
    # axial view: patient right (file x = 0, air) is on the image left, last column = x 5
    assert grey[0, -1] == 0 and grey[0, -2] == 255 and grey[0, 0] == 128


def test_4d_with_one_volume_is_squeezed():
    data, affine = variants()["RAS"]
    slices, meta = volume_slices(nifti_bytes(data[..., None], affine), "v.nii", ReadOptions())
    assert len(slices) == NZ and meta["shape"] == [NX, NY, NZ]


def test_real_4d_refused():
    data = np.zeros((4, 4, 4, 3), np.int16)
    with pytest.raises(ImageReadError, match=r"4-D volume \(shape \(4, 4, 4, 3\)\) where a 3-D"):
        volume_slices(nifti_bytes(data, np.eye(4)), "fmri.nii", ReadOptions())


def _header_only(shape: tuple[int, ...], dtype=np.uint8, payload: bytes = b"\x00" * 64) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4 + payload


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_huge_declared_volume_refused_before_loading(gz: bool, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("voxel data loaded for an oversized volume")

    monkeypatch.setattr(nib.Nifti1Image, "from_bytes", no_load)
    blob = _header_only((2000, 2000, 2000))
    if gz:
        blob = gzip.compress(blob)
    with pytest.raises(ImageReadError, match="8000000000 voxels .* exceeds the limit"):
        volume_slices(blob, "big.nii.gz" if gz else "big.nii", ReadOptions())
    # a slice larger than max_side is refused from the header too
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        volume_slices(_header_only((9000, 10, 2)), "wide.nii", ReadOptions())


def _gzip_stream(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` followed by ``zeros`` zero bytes, built without holding them."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip container; level 1 is fastest
    parts = [comp.compress(head)]
    block = b"\x00" * (1 << 20)
    for _ in range(zeros // len(block)):
        parts.append(comp.compress(block))
    parts.append(comp.flush())
    return b"".join(parts)


def test_gzip_bomb_refused_without_inflating_it():
    small = _header_only((4, 4, 4))  # declares 64 voxels of uint8
    bomb = _gzip_stream(small, 256 << 20)  # ... then inflates by another 256 MiB
    assert len(bomb) < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="more data than its header declares"):
            volume_slices(bomb, "bomb.nii.gz", ReadOptions())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_gzip_bomb_with_huge_declared_shape_refused():
    bomb = _gzip_stream(_header_only((1500, 1500, 1500), payload=b""), 64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="exceeds the limit"):
            volume_slices(bomb, "bomb.nii.gz", ReadOptions())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"\x00" * 400, "not a NIfTI"),
        (b"\x5c\x01\x00\x00" + b"\x00" * 400, "not a NIfTI"),  # sizeof_hdr 348, no magic
        (b"\x1f\x8b\x08\x00" + b"garbage" * 20, "corrupt or truncated gzip"),
    ],
    ids=["zeros", "bad-magic", "bad-gzip"],
)
def test_corrupt_bytes_refused(blob: bytes, reason: str):
    with pytest.raises(ImageReadError, match=reason):
        volume_slices(blob, "bad.nii.gz", ReadOptions())


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_truncated_file_refused(gz: bool):
    data, affine = variants()["RAS"]
    raw = nifti_bytes(data, affine)
    cut = gzip.compress(raw)[:-40] if gz else raw[:-20]
    with pytest.raises(ImageReadError, match="truncated"):
        read_nifti(cut, "cut.nii.gz" if gz else "cut.nii", ReadOptions())


def test_free_text_header_fields_never_returned():
    data, affine = variants()["RAS"]
    img = nib.Nifti1Image(data, affine)
    img.header["descrip"] = b"DOE^JANE 1970-01-01"
    img.header["aux_file"] = b"DOE_aux"
    img.header["intent_name"] = b"DOE_int"
    img.header["db_name"] = b"DOE_db"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"DOE^JANE"))
    blob = img.to_bytes()
    assert b"DOE^JANE" in blob
    slices, meta = volume_slices(blob, "v.nii", ReadOptions())
    images = read_nifti(blob, "v.nii", ReadOptions())
    text = json.dumps([meta] + [[im.metadata, im.preprocessing, im.frame_key] for im in images])
    assert "DOE" not in text


def test_two_d_nifti_is_one_slice():
    slices, meta = volume_slices(nifti_bytes(np.ones((3, 4), np.float32), np.eye(4)), "v.nii", ReadOptions())
    assert len(slices) == 1 and slices[0][1].shape == (4, 3)


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_dispatcher_routes_nifti(gz: bool):
    data, affine = variants()["LPS"]
    images = read_images(nifti_bytes(data, affine, gz=gz), "v.nii.gz" if gz else "v.nii", uid_key=KEY)
    assert len(images) == NZ and images[0].source_format == "nifti"
    assert images[-1].frame_key == f"axial-{NZ - 1}"


# --- the real MNI152 template shipped with nilearn (1 mm, RAS, 197 x 233 x 189) ----------


@pytest.fixture(scope="module")
def mni() -> tuple[bytes, np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("nilearn")  # locates the package without importing it (slow)
    if spec is None or spec.origin is None:
        pytest.skip("nilearn not installed")
    path = Path(spec.origin).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    if not path.is_file():
        pytest.skip("nilearn MNI template not installed")
    blob = path.read_bytes()
    ref = nib.Nifti1Image.from_bytes(gzip.decompress(blob))
    return blob, np.asarray(ref.dataobj, dtype=np.float32), ref.affine


def test_mni_axial_slices_match_world_coordinates(mni):
    blob, ref, affine = mni
    images = read_nifti(blob, "mni.nii.gz", ReadOptions())
    assert len(images) == 189
    assert images[0].pixels.shape == (233, 197, 3) and images[0].modality == "MR"
    slices, meta = volume_slices(blob, "mni.nii.gz", ReadOptions())
    assert meta["orientation_before"] == "RAS" and meta["voxel_size_mm"] == [1.0, 1.0, 1.0]
    # Image (row r, column c) of axial slice k shows the world point
    # x = x_max - c (patient right at image left), y = y_max - r (anterior at top), z = z_min + k.
    x_max, y_max, z_min = (affine @ [196, 232, 0, 1])[:3]
    inverse = np.linalg.inv(affine)
    rng = np.random.default_rng(3)
    for _ in range(500):
        k, r, c = rng.integers(0, 189), rng.integers(0, 233), rng.integers(0, 197)
        i, j, kk = np.rint(inverse @ [x_max - c, y_max - r, z_min + k, 1])[:3].astype(int)
        assert slices[k][1][r, c] == ref[i, j, kk]


def test_mni_anatomy_is_displayed_upright(mni):
    blob, _, affine = mni
    to_index = np.linalg.inv(affine)
    z_cerebellum = int(np.rint(to_index @ [0, 0, -40, 1])[2])  # 40 mm below the AC
    x_midline = int(np.rint(to_index @ [0, 0, 0, 1])[0])
    axial, _ = volume_slices(blob, "mni.nii.gz", ReadOptions(nifti_axis="axial"))
    # 40 mm below the AC only the cerebellum and brainstem lie on the midline, behind the
    # AC: brain tissue is in the lower (posterior) half of the axial image
    plane = axial[z_cerebellum][1]
    rows = np.nonzero(plane[:, plane.shape[1] // 2 - 3 : plane.shape[1] // 2 + 3] > 30)[0]
    assert rows.size and rows.mean() > plane.shape[0] / 2
    sagittal, _ = volume_slices(blob, "mni.nii.gz", ReadOptions(nifti_axis="sagittal"))
    plane = sagittal[x_midline][1]
    fg = plane > 30
    # the box reaches 116 mm above the AC, the brain about 84 mm: empty rows at the top,
    # brainstem cut at the bottom row
    assert not fg[:20].any() and fg[-1].any()
    # at cerebellum level the tissue is posterior: on the image's right
    row = plane.shape[0] - 1 - z_cerebellum
    assert np.nonzero(fg[row])[0].mean() > plane.shape[1] / 2


def test_volume_scale_equals_percentile_normalise_on_one_slice():
    from annotations.io.preprocess import percentile_normalise

    vol = np.random.default_rng(5).normal(100, 30, (7, 9, 1)).astype(np.float32)
    vol[0, 0, 0] = np.nan
    [image] = read_nifti(nifti_bytes(vol, np.eye(4)), "one.nii", ReadOptions())
    [(_, plane)], _ = volume_slices(nifti_bytes(vol, np.eye(4)), "one.nii", ReadOptions())
    expected, record = percentile_normalise(plane)
    assert np.array_equal(image.pixels[:, :, 0], expected)
    assert image.preprocessing["low"] == pytest.approx(record["low"])
