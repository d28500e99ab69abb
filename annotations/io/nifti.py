"""NIfTI-1/2 volumes (.nii, .nii.gz) to 2-D slices in the radiological display convention.

Safety: the header is parsed and checked (dimensions, voxel count, slice size, datatype)
before any voxel is read, and a gzipped file is never decompressed past what its header
declares, so a gzip bomb or a header claiming a huge volume cannot exhaust memory.

Orientation: every volume is first reoriented to the closest canonical orientation (RAS+,
``nibabel.as_closest_canonical``): array axis 0 points to the patient's Right, axis 1 to
Anterior, axis 2 to Superior. Then, whatever the file's affine, each plane is cut the same
way and shown as a radiologist expects (see ``_display``).

No free-text header field (descrip, aux_file, intent_name, db_name, data_type, extensions) is
ever copied out: metadata is built from numbers only.
"""

from __future__ import annotations

import copy
import gzip
import io
import math
import struct
import zlib

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation
from nibabel.spatialimages import HeaderDataError

from . import check_size
from .preprocess import ct_window, grey_to_rgb, percentile_range, scale_to_uint8
from .types import DecodedImage, ImageReadError, ReadOptions, SliceInfo

AXES = ("sagittal", "coronal", "axial")  # index = canonical array axis sliced along (R, A, S)
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_OFFSET = 1 << 20  # bytes; header + extensions beyond 1 MiB is not an image we accept
_TRAILING_SLACK = 1 << 16  # bytes tolerated after the declared voxel data (writers' padding)
_LOW_PCT, _HIGH_PCT = 0.5, 99.5  # same defaults as preprocess.percentile_normalise
# CT rule (see _looks_like_hu): integer-valued voxels spanning at least [-500, 500] are HU.
_HU_MIN, _HU_MAX = -500.0, 500.0
_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}


def volume_slices(data: bytes, name: str, options: ReadOptions) -> tuple[list[tuple[SliceInfo, np.ndarray]], dict]:
    """Cut a NIfTI volume into display-oriented 2-D slices of raw values.

    Returns ([(SliceInfo(axis, index, count), float32 (H, W) array), ...], volume metadata).
    ``index`` counts along the canonical axis from its low end: from the patient's Left
    (sagittal), Posterior (coronal) or Inferior (axial). H and W are in pixels and
    ``meta["pixel_spacing_mm"]`` gives their (row, column) spacing. Values are the stored
    values after the header's scl_slope/scl_inter (e.g. HU for most CT), not normalised.
    Raises ImageReadError for anything that is not a safe, readable 3-D NIfTI volume.
    """
    volume, meta = _load_canonical(data, name, options)
    return list(_iter_slices(volume, options.nifti_axis)), meta


def read_nifti(data: bytes, name: str, options: ReadOptions) -> list[DecodedImage]:
    """Decode every slice of a NIfTI volume along ``options.nifti_axis`` as model input.

    CT rule: if every finite voxel is integer-valued, no value is NaN and the values span at
    least [-500, 500] (air near -1000 HU, bone above +500 HU: MR magnitude images are never
    that negative), slices are windowed with ``options.ct_window`` (modality "CT"). Otherwise
    the 0.5th/99.5th intensity percentiles are computed once over the whole volume and
    applied to every slice (modality "MR"), so all slices of a volume share one scale.
    frame_key is "<axis>-<index>"; no slice is skipped.
    """
    volume, meta = _load_canonical(data, name, options)
    axis = options.nifti_axis
    if _looks_like_hu(volume):
        modality = "CT"
        convert = _ct_converter(options.ct_window)
    else:
        modality = "MR"
        convert = _percentile_converter(volume)
    images = []
    for info, plane in _iter_slices(volume, axis):
        grey, record = convert(plane)
        images.append(
            DecodedImage(
                pixels=grey_to_rgb(grey),
                modality=modality,
                source_format="nifti",
                frame_key=f"{axis}-{info.index}",
                metadata=copy.deepcopy(meta),  # images must not share mutable lists
                preprocessing=record,
                slice=info,
            )
        )
    return images


# --- header and bytes -------------------------------------------------------------------


def _load_canonical(data: bytes, name: str, options: ReadOptions) -> tuple[np.ndarray, dict]:
    """Check the header, read the voxels and reorient them to RAS+.

    Returns the float32 3-D volume (axes R, A, S; possibly a non-contiguous view) and the
    JSON-serialisable volume metadata for ``options.nifti_axis``.
    """
    if options.nifti_axis not in AXES:
        raise ValueError(f"nifti_axis must be one of {AXES}, got {options.nifti_axis!r}")
    stream: io.BufferedIOBase = gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == _GZIP_MAGIC else io.BytesIO(data)
    try:
        head = stream.read(540)
        header = _parse_header(head, name)
        shape3, affine, dtype = _check_header(header, name, options)
        # Read exactly what the header declares, and a little more to spot a bomb.
        total = (
            max(header.get_data_offset(), header.sizeof_hdr + 4) + math.prod(header.get_data_shape()) * dtype.itemsize
        )
        if isinstance(stream, io.BytesIO) and len(data) >= total:
            raw = data  # already in memory; nibabel reads only the declared voxels
        else:
            raw = head[:total] + stream.read(max(total - len(head), 0))
        if len(raw) < total:
            raise ImageReadError(name, f"truncated NIfTI data: header declares {total} bytes, file holds {len(raw)}")
        if len(stream.read(_TRAILING_SLACK + 1)) > _TRAILING_SLACK:
            raise ImageReadError(name, "NIfTI file holds more data than its header declares")
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ImageReadError(name, f"corrupt or truncated gzip data ({exc})") from None

    image_class = nib.Nifti2Image if header.sizeof_hdr == 540 else nib.Nifti1Image
    try:
        img = image_class.from_bytes(raw)
        volume = img.get_fdata(dtype=np.float32)
    except (HeaderDataError, ValueError, OSError, EOFError, IndexError, KeyError, struct.error) as exc:
        # nibabel reports a corrupt extension or data block with any of these
        raise ImageReadError(name, f"corrupt NIfTI data ({type(exc).__name__}: {exc})") from None
    del raw, img
    volume = volume.reshape(shape3)  # squeeze trailing size-1 dims, pad a 2-D image

    # Same as nibabel.as_closest_canonical on the file's image, done on the float32 data
    # (a view: flips and transposes only), so values and affine stay consistent.
    canonical = nib.as_closest_canonical(nib.Nifti2Image(volume, affine))
    volume = np.asanyarray(canonical.dataobj)
    try:
        unit = _UNIT_TO_MM.get(header.get_xyzt_units()[0], 1.0)
    except KeyError:  # unknown unit code: NIfTI's default is mm
        unit = 1.0
    voxel_mm = [float(round(v * unit, 6)) for v in np.linalg.norm(canonical.affine[:3, :3], axis=0)]
    axis = options.nifti_axis
    along = AXES.index(axis)
    rows, cols = _plane_axes(along)
    meta = {
        "nifti_version": 2 if header.sizeof_hdr == 540 else 1,
        "shape": [int(n) for n in volume.shape],
        "voxel_size_mm": voxel_mm,
        "orientation_before": "".join(nib.aff2axcodes(affine)),
        "orientation_after": "".join(nib.aff2axcodes(canonical.affine)),
        "datatype": dtype.name,
        "slice_axis": axis,
        "slice_count": int(volume.shape[along]),
        "pixel_spacing_mm": [voxel_mm[rows], voxel_mm[cols]],
        "slice_spacing_mm": voxel_mm[along],
    }
    return volume, meta


def _parse_header(head: bytes, name: str) -> nib.Nifti1Header:
    """Recognise a single-file NIfTI-1 or NIfTI-2 header from its first bytes."""
    for endian in "<>":
        if len(head) >= 4 and struct.unpack(endian + "i", head[:4])[0] in (348, 540):
            size = struct.unpack(endian + "i", head[:4])[0]
            break
    else:
        raise ImageReadError(name, "not a NIfTI file (no NIfTI header)")
    if len(head) < size:
        raise ImageReadError(name, "truncated NIfTI header")
    header_class = nib.Nifti2Header if size == 540 else nib.Nifti1Header
    block = head[:size]
    header = header_class(block, check=False)
    magic = header["magic"].item()
    if magic in (b"ni1", b"ni2"):
        raise ImageReadError(name, "NIfTI header/image pair (.hdr/.img) is not supported")
    if magic not in (b"n+1", b"n+2"):
        raise ImageReadError(name, "not a NIfTI file (bad magic; Analyze 7.5 is not supported)")
    try:
        return header_class(block, check=True)  # nibabel's own fixes, as when loading
    except HeaderDataError as exc:
        raise ImageReadError(name, f"corrupt NIfTI header ({exc})") from None


def _check_header(
    header: nib.Nifti1Header, name: str, options: ReadOptions
) -> tuple[tuple[int, int, int], np.ndarray, np.dtype]:
    """Refuse what must not be loaded; return (3-D shape in file order, affine, dtype)."""
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        affine = header.get_best_affine()
    except (HeaderDataError, KeyError, ValueError) as exc:
        raise ImageReadError(name, f"corrupt NIfTI header ({exc})") from None
    if not shape or min(shape) <= 0:
        raise ImageReadError(name, f"NIfTI volume has no voxels (shape {shape})")
    if len(shape) > 3 and math.prod(shape[3:]) > 1:
        raise ImageReadError(name, f"{len(shape)}-D volume (shape {shape}) where a 3-D volume is expected")
    if len(shape) == 1:
        raise ImageReadError(name, f"1-D NIfTI data (shape {shape}) is not an image")
    shape3 = (shape + (1,))[:3]  # a 2-D image is a one-slice volume
    voxels = math.prod(shape3)
    if voxels > options.max_volume_voxels:
        raise ImageReadError(
            name, f"volume of {voxels} voxels {shape3} exceeds the limit of {options.max_volume_voxels}"
        )
    if dtype.kind not in "biuf":
        raise ImageReadError(name, f"unsupported NIfTI datatype {dtype} (RGB or complex)")
    if header.get_data_offset() > _MAX_OFFSET:
        raise ImageReadError(name, "NIfTI header extensions are too large")
    ornt = io_orientation(affine) if np.all(np.isfinite(affine)) else np.full((3, 2), np.nan)
    if np.isnan(ornt).any():
        raise ImageReadError(name, "NIfTI affine does not define an orientation")
    canonical_shape = [0, 0, 0]
    for file_axis, (ras_axis, _flip) in enumerate(ornt):
        canonical_shape[int(ras_axis)] = shape3[file_axis]
    along = AXES.index(options.nifti_axis)
    rows, cols = _plane_axes(along)
    check_size(name, canonical_shape[rows], canonical_shape[cols], options)
    return shape3, affine, dtype


# --- slicing and display ----------------------------------------------------------------


def _plane_axes(along: int) -> tuple[int, int]:
    """Canonical axes (0=R, 1=A, 2=S) that become (image rows, image columns)."""
    return {2: (1, 0), 1: (2, 0), 0: (2, 1)}[along]


def _display(plane: np.ndarray) -> np.ndarray:
    """Orient a canonical plane for display: transpose, then flip both image axes.

    ``plane`` is the 2-D cut of the RAS+ volume with its two remaining axes in R, A, S order:
    axial (R, A), coronal (R, S), sagittal (A, S). ``plane.T`` puts the second axis on the
    rows; ``[::-1, ::-1]`` makes rows run from its high end (Anterior for axial, Superior for
    coronal and sagittal) at the top, and columns from the first axis' high end (patient Right
    for axial and coronal, Anterior for sagittal) at the image's left. That is the
    radiological convention: axial seen from the feet, coronal seen from the front, sagittal
    seen from the patient's left with the face on the image's left.
    """
    return np.ascontiguousarray(plane.T[::-1, ::-1], dtype=np.float32)


def _iter_slices(volume: np.ndarray, axis: str):
    """Yield (SliceInfo, float32 (H, W)) for every slice along ``axis``, low index first."""
    along = AXES.index(axis)
    count = volume.shape[along]
    for index in range(count):
        plane = volume[(slice(None),) * along + (index,)]  # a view; np.take would copy slowly
        yield SliceInfo(axis=axis, index=index, count=count), _display(plane)


# --- intensity ----------------------------------------------------------------------------


def _looks_like_hu(volume: np.ndarray) -> bool:
    """True for integer-valued, NaN-free volumes spanning at least [-500, 500] (CT in HU)."""
    lo, hi = float(np.min(volume)), float(np.max(volume))
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > _HU_MIN or hi < _HU_MAX:
        return False
    # slice by slice, so the integer test never makes a full-volume temporary
    return all(np.array_equal(s, np.rint(s)) for s in np.moveaxis(volume, 2, 0))


def _ct_converter(preset: str):
    def convert(plane: np.ndarray) -> tuple[np.ndarray, dict]:
        grey, record = ct_window(plane, preset)
        return grey, {**record, "modality_rule": "hu_range"}

    return convert


def _percentile_converter(volume: np.ndarray):
    """Percentiles once over the volume's finite voxels; the same mapping for every slice."""
    lo, hi = percentile_range(volume, _LOW_PCT, _HIGH_PCT)
    record = {
        "method": "percentile",
        "low_pct": _LOW_PCT,
        "high_pct": _HIGH_PCT,
        "low": lo,
        "high": hi,
        "scope": "volume",
    }

    def convert(plane: np.ndarray) -> tuple[np.ndarray, dict]:
        return scale_to_uint8(plane, lo, hi), dict(record)

    return convert
