"""Tests for inference.engine.rle, checked against pycocotools as the reference.

Pure numpy/pytest; run with:
    .venv/bin/python -m pytest -p no:django -q tests/inference/test_rle.py
"""

from __future__ import annotations

import itertools
import time
import tracemalloc

import numpy as np
import pytest

from inference.engine import rle

mask_api = pytest.importorskip("pycocotools.mask")

# pycocotools' Cython layer trips a numpy 2 deprecation on every decode.
pytestmark = pytest.mark.filterwarnings("ignore:.*copy keyword:DeprecationWarning")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def coco_encode(mask: np.ndarray) -> dict:
    return mask_api.encode(np.asfortranarray((np.asarray(mask) != 0).astype(np.uint8)))


def coco_polygons(polygons: list[list[float]], h: int, w: int) -> np.ndarray:
    rles = mask_api.frPyObjects(polygons, h, w)
    return mask_api.decode(rles).any(axis=2)


def plain_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts, the slow obvious way (column-major)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F").tolist()
    counts = [] if not flat[0] else [0]
    counts += [len(list(group)) for _, group in itertools.groupby(flat)]
    return counts


def blobs(h: int, w: int, rng: np.random.Generator, n: int = 3, spread: float = 0.3) -> np.ndarray:
    """Union of random ellipses: a blob-like mask.  ``spread`` > 0.5 lets them
    run off the image edges."""
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(n):
        cy, cx = rng.uniform(0.5 - spread, 0.5 + spread, size=2) * (h, w)
        ry, rx = rng.uniform(0.05, 0.25, size=2) * min(h, w)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (17, 13), (31, 64), (64, 31), (100, 1), (129, 257)]


def random_masks(rng: np.random.Generator):
    for h, w in SIZES:
        yield np.zeros((h, w), dtype=bool)
        yield np.ones((h, w), dtype=bool)
        for density in (0.01, 0.3, 0.5, 0.9):
            yield rng.random((h, w)) < density


# --------------------------------------------------------------------------
# encode / decode / area
# --------------------------------------------------------------------------


def test_encode_matches_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for mask in random_masks(rng):
        got = rle.encode(mask)
        ref = coco_encode(mask)
        assert got["size"] == [int(v) for v in ref["size"]]
        assert got["counts"] == ref["counts"].decode("ascii"), mask.shape
        assert isinstance(got["counts"], str)


@pytest.mark.parametrize("seed", range(3))
def test_encode_matches_pycocotools_on_large_blobs(seed):
    rng = np.random.default_rng(seed)
    mask = blobs(1024, 1024, rng, n=4)
    assert rle.encode(mask)["counts"] == coco_encode(mask)["counts"].decode()
    assert np.array_equal(rle.decode(rle.encode(mask)), mask)


def test_encode_long_runs_and_large_deltas():
    # Runs of tens of thousands of pixels need multi-character varints, and
    # alternating long/short runs give large negative deltas.
    mask = np.zeros((1, 200_000), dtype=bool)
    mask[0, [5, 70_000, 70_001, 70_003, 199_999]] = True
    mask[0, 100:60_000] = True
    assert rle.encode(mask)["counts"] == coco_encode(mask)["counts"].decode()
    tall = mask.reshape(400, 500)
    assert rle.encode(tall)["counts"] == coco_encode(tall)["counts"].decode()
    assert np.array_equal(rle.decode(rle.encode(tall)), tall)


def test_encode_accepts_numeric_dtypes_nonzero_is_foreground():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 3, size=(23, 19))
    expected = coco_encode(values != 0)["counts"].decode()
    for dtype in (np.uint8, np.int32, np.float32, np.int64):
        assert rle.encode(values.astype(dtype))["counts"] == expected
    # Non-contiguous and Fortran-ordered views encode the same.
    assert rle.encode(np.asfortranarray(values))["counts"] == expected
    big = np.zeros((46, 38), dtype=np.uint8)
    big[::2, ::2] = values
    assert rle.encode(big[::2, ::2])["counts"] == expected


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (5,), (2, 2, 2)])
def test_encode_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="2-D"):
        rle.encode(np.zeros(shape, dtype=bool))


def test_decode_roundtrip_and_area():
    rng = np.random.default_rng(2)
    for mask in random_masks(rng):
        encoded = rle.encode(mask)
        decoded = rle.decode(encoded)
        assert decoded.dtype == np.bool_
        assert decoded.shape == mask.shape
        assert np.array_equal(decoded, mask)
        assert rle.area(encoded) == int(mask.sum())


def test_decode_pycocotools_output_bytes_and_str():
    rng = np.random.default_rng(3)
    for mask in random_masks(rng):
        ref = coco_encode(mask)
        as_bytes = {"size": list(ref["size"]), "counts": ref["counts"]}
        as_str = {"size": list(ref["size"]), "counts": ref["counts"].decode()}
        assert np.array_equal(rle.decode(as_bytes), mask)
        assert np.array_equal(rle.decode(as_str), mask)
        assert rle.area(as_bytes) == int(mask_api.area(ref))


def test_decode_output_feeds_pycocotools():
    mask = blobs(200, 150, np.random.default_rng(4))
    ours = rle.encode(mask)
    back = mask_api.decode({"size": ours["size"], "counts": ours["counts"].encode()})
    assert np.array_equal(back.astype(bool), mask)


def test_decode_uncompressed_counts():
    rng = np.random.default_rng(5)
    for mask in random_masks(rng):
        counts = plain_counts(mask)
        obj = {"size": list(mask.shape), "counts": counts}
        assert np.array_equal(rle.decode(obj), mask)
        assert rle.area(obj) == int(mask.sum())
    # pycocotools agrees on what uncompressed RLE means.
    mask = rng.random((9, 11)) < 0.4
    obj = {"size": [9, 11], "counts": plain_counts(mask)}
    compressed = mask_api.frPyObjects(obj, 9, 11)
    assert compressed["counts"].decode() == rle.encode(mask)["counts"]
    # numpy ints and tuples are fine too; zero-length runs are harmless.
    assert np.array_equal(rle.decode({"size": (2, 2), "counts": [np.int64(1), 0, 0, 3]}), [[False, True], [True, True]])


def test_decode_expected_size():
    mask = np.ones((100, 90), dtype=bool)
    encoded = rle.encode(mask)
    assert rle.decode(encoded, expected_size=(100, 90)).shape == (100, 90)
    with pytest.raises(ValueError, match=r"mask is 100x90 \(height x width\) but the image is 128x128"):
        rle.decode(encoded, expected_size=(128, 128))
    with pytest.raises(ValueError, match="90x100"):
        rle.decode(encoded, expected_size=(90, 100))


MALFORMED = [
    ("not a dict", "must be a dict"),
    ({"size": [2, 2]}, r"missing \['counts'\]"),
    ({"counts": "04"}, r"missing \['size'\]"),
    ({"size": [2, 2], "counts": "04", "extra": 1}, r"extra \['extra'\]"),
    ({"size": [2], "counts": "04"}, "size must be"),
    ({"size": "2x2", "counts": "04"}, "size must be"),
    ({"size": [2, 2, 1], "counts": "04"}, "size must be"),
    ({"size": [0, 4], "counts": "0"}, "positive ints"),
    ({"size": [-2, -2], "counts": "04"}, "positive ints"),
    ({"size": [2.0, 2], "counts": "04"}, "positive ints"),
    ({"size": [True, 4], "counts": "04"}, "positive ints"),
    ({"size": [2, 2], "counts": 4}, "counts must be a str, bytes or list"),
    ({"size": [2, 2], "counts": None}, "got NoneType"),
    ({"size": [2, 2], "counts": {"a": 1}}, "got dict"),
    ({"size": [2, 2], "counts": "0 4"}, r"invalid character ' ' \(code 32\) at index 1"),
    ({"size": [2, 2], "counts": "04p"}, r"invalid character 'p' \(code 112\) at index 2"),
    ({"size": [2, 2], "counts": "/4"}, r"code 47\) at index 0"),
    ({"size": [2, 2], "counts": "0\u00e94"}, "non-ASCII character at index 1"),
    ({"size": [2, 2], "counts": b"0\xff"}, "code 255"),
    ({"size": [2, 2], "counts": "0" + chr(48 + 0x20)}, "truncated"),
    ({"size": [2, 2], "counts": "PPPPPPPP0"}, "varint of 9 chars at index 0"),
    ({"size": [2, 2], "counts": "O5"}, "run 0 has negative length -1"),
    ({"size": [2, 2], "counts": [1, -1, 4]}, "run 1 has negative length -1"),
    ({"size": [2, 2], "counts": "03"}, "sum to 3 pixels but size 2x2 needs 4"),
    ({"size": [2, 2], "counts": "05"}, "sum to 5 pixels"),
    ({"size": [2, 2], "counts": ""}, "sum to 0 pixels"),
    ({"size": [2, 2], "counts": [1, 2]}, "sum to 3 pixels"),
    ({"size": [2, 2], "counts": [1, 2.5, 0.5]}, r"counts\[1\] must be an int, got 2.5"),
    ({"size": [2, 2], "counts": [1, True, 2]}, r"counts\[1\] must be an int, got True"),
    ({"size": [2, 2], "counts": [1, "3"]}, r"counts\[1\] must be an int"),
    ({"size": [2, 2], "counts": [0] * 10 + [4]}, "11 runs, more than the 5"),
    ({"size": [2, 2], "counts": [2**40, 4]}, "longer than the whole mask"),
    ({"size": [1, 1], "counts": "1" * 1000}, "too long"),
]


@pytest.mark.parametrize(("obj", "message"), MALFORMED)
def test_malformed_rle_raises_value_error(obj, message):
    with pytest.raises(ValueError, match=message):
        rle.decode(obj)
    with pytest.raises(ValueError, match=message):
        rle.area(obj)


def test_size_over_max_pixels_rejected_quickly_without_allocating():
    hostile = {"size": [10**6, 10**6], "counts": "0" * 64}
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(ValueError, match=r"1000000x1000000 is 1000000000000 pixels, more than the limit of 64000"):
            rle.decode(hostile)
        with pytest.raises(ValueError, match="more than the limit"):
            rle.area(hostile)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 1_000_000
    with pytest.raises(ValueError, match="more than the limit of 100"):
        rle.decode(rle.encode(np.ones((11, 10))), max_pixels=100)
    assert rle.decode(rle.encode(np.ones((10, 10))), max_pixels=100).all()


def test_is_rle():
    assert rle.is_rle({"size": [2, 3], "counts": "06"})
    assert rle.is_rle({"size": (2, 3), "counts": b"06"})
    assert rle.is_rle({"size": [2, 3], "counts": [6]})
    assert rle.is_rle(rle.encode(np.eye(4)))
    assert not rle.is_rle(None)
    assert not rle.is_rle([[0, 0, 1, 1, 2, 2]])
    assert not rle.is_rle({"size": [2, 3]})
    assert not rle.is_rle({"size": [2, 3], "counts": "06", "x": 1})
    assert not rle.is_rle({"size": [2], "counts": "06"})
    assert not rle.is_rle({"size": [2.0, 3], "counts": "06"})
    assert not rle.is_rle({"size": [2, 3], "counts": 6})


def test_encode_decode_speed_1024():
    mask = blobs(1024, 1024, np.random.default_rng(6), n=4)
    encoded = rle.encode(mask)
    start = time.perf_counter()
    for _ in range(5):
        rle.encode(mask)
        rle.decode(encoded)
    per_pair = (time.perf_counter() - start) / 5
    # Typically ~1-2 ms each; generous bound so a loaded machine doesn't flake.
    assert per_pair < 0.1


# --------------------------------------------------------------------------
# from_polygons
# --------------------------------------------------------------------------


def random_polygon(rng: np.random.Generator, h: int, w: int) -> list[float]:
    kind = rng.integers(0, 6)
    k = 3 if kind == 0 else int(rng.integers(4, 25))
    if kind == 1:  # star-shaped, usually concave
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = rng.uniform(0.1, 0.6, k) * max(h, w)
        xs, ys = cx + radius * np.cos(angles), cy + radius * np.sin(angles)
        xs, ys = np.clip(xs, -1, w + 1), np.clip(ys, -1, h + 1)
    else:  # random vertex order: self-intersecting
        xs, ys = rng.uniform(-1, w + 1, k), rng.uniform(-1, h + 1, k)
    if kind == 2:  # integer corners: edges on pixel boundaries, touching the frame
        xs, ys = np.round(xs), np.round(ys)
    elif kind == 3:  # half-pixel and exact-tenth coordinates hit rounding ties
        xs, ys = np.round(xs * 2) / 2, np.round(ys * 10) / 10
    elif kind == 4:  # vertices pinned to the tolerance border and repeated vertices
        xs[::3], ys[1::3] = -1.0, h + 1.0
        xs[1], ys[1] = xs[0], ys[0]
    return np.stack((xs, ys), axis=1).ravel().tolist()


@pytest.mark.parametrize("seed", range(4))
def test_from_polygons_matches_pycocotools_random(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 120, size=2))
        polygons = [random_polygon(rng, h, w) for _ in range(int(rng.integers(1, 4)))]
        got = rle.from_polygons(polygons, h, w)
        ref = coco_polygons(polygons, h, w)
        assert got.shape == (h, w) and got.dtype == np.bool_
        assert np.array_equal(got, ref), (h, w, polygons)


def test_from_polygons_matches_pycocotools_large():
    rng = np.random.default_rng(7)
    for _ in range(10):
        h, w = (int(v) for v in rng.integers(300, 1500, size=2))
        polygons = [random_polygon(rng, h, w) for _ in range(5)]
        assert np.array_equal(rle.from_polygons(polygons, h, w), coco_polygons(polygons, h, w))


def test_from_polygons_shared_edges_between_polygons():
    # Two squares sharing an edge, and a triangle inside the first: union.
    polygons = [
        [2, 2, 6, 2, 6, 6, 2, 6],
        [6, 2, 9, 2, 9, 6, 6, 6],
        [3, 3, 5, 3, 4, 5],
    ]
    got = rle.from_polygons(polygons, 10, 12)
    assert np.array_equal(got, coco_polygons(polygons, 10, 12))
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:6, 2:9] = True
    assert np.array_equal(got, expected)


def test_from_polygons_hand_made():
    # Pixel (r, c) covers [c, c+1] x [r, r+1]: a 2x2 square at the origin.
    square = rle.from_polygons([[0, 0, 2, 0, 2, 2, 0, 2]], 4, 4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[:2, :2] = True
    assert np.array_equal(square, expected)
    # The full frame (and slightly beyond) covers everything.
    assert rle.from_polygons([[0, 0, 5, 0, 5, 3, 0, 3]], 3, 5).all()
    assert rle.from_polygons([[-1, -1, 6, -1, 6, 4, -1, 4]], 3, 5).all()
    # x is the column, y the row: a wide, short rectangle.
    rect = rle.from_polygons([[1, 0, 4, 0, 4, 1, 1, 1]], 3, 5)
    assert np.argwhere(rect).tolist() == [[0, 1], [0, 2], [0, 3]]
    triangle = [[0.5, 0.5, 7.5, 0.5, 0.5, 7.5]]
    assert np.array_equal(rle.from_polygons(triangle, 8, 8), coco_polygons(triangle, 8, 8))
    # numpy arrays and tuples are accepted as polygons; no polygons, empty mask.
    assert np.array_equal(rle.from_polygons([np.array([0, 0, 2, 0, 2, 2, 0, 2.0])], 4, 4), expected)
    assert not rle.from_polygons([], 4, 4).any()


@pytest.mark.parametrize(
    ("polygons", "message"),
    [
        ([[0, 0, 1, 1]], "polygon 0 has 4 coordinates"),
        ([[0, 0, 1, 1, 2]], "has 5 coordinates"),
        ([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2, 3]], "polygon 1 has 7 coordinates"),
        ([[0, 0, 1, float("nan"), 2, 2]], "non-finite"),
        ([[0, 0, 1, float("inf"), 2, 2]], "non-finite"),
        ([[0, 0, 11.5, 0, 2, 2]], r"x \(column\) outside \[-1, 11\] for width 10"),
        ([[-1.5, 0, 1, 0, 2, 2]], r"x \(column\) outside"),
        ([[0, 0, 1, 0, 2, 21.01]], r"y \(row\) outside \[-1, 21\] for height 20"),
        ([[0, -2, 1, 0, 2, 2]], r"y \(row\) outside"),
        ([[[0, 0], [1, 0], [1, 1]]], "flat list"),
        (["0, 0, 1, 0, 1, 1"], "flat list"),
        ([[0, 0, "a", 0, 1, 1]], "only numbers"),
        ([0, 0, 1, 0, 1, 1], "flat list"),
        ("nope", "list of flat coordinate lists"),
        ([[0, 0, 1, 0, 1, 1]] * 1001, "1001 polygons given, at most 1000"),
        ([[0.0, 0.0] * 50_001] * 2, "100002 polygon vertices given, at most 100000"),
    ],
)
def test_from_polygons_validation(polygons, message):
    with pytest.raises(ValueError, match=message):
        rle.from_polygons(polygons, 20, 10)


def test_from_polygons_bad_size():
    with pytest.raises(ValueError, match="positive ints"):
        rle.from_polygons([[0, 0, 1, 0, 1, 1]], 0, 10)
    with pytest.raises(ValueError, match="more than the limit"):
        rle.from_polygons([[0, 0, 1, 0, 1, 1]], 10**6, 10**6)


def test_from_polygons_bounds_total_work():
    # Many long edges zig-zagging across a wide image: refused up front.
    w = 50_000
    zigzag = [v for i in range(5_000) for v in ((0.0 if i % 2 else float(w)), 0.5 + i * 1e-4)]
    with pytest.raises(ValueError, match="more than the limit"):
        rle.from_polygons([zigzag], 2, w)


# --------------------------------------------------------------------------
# to_polygons
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_to_polygons_roundtrip_iou(seed):
    rng = np.random.default_rng(200 + seed)
    h, w = (int(v) for v in rng.integers(40, 400, size=2))
    mask = blobs(h, w, rng, n=int(rng.integers(1, 4)), spread=0.3 if seed % 2 else 0.6)
    if mask.sum() < 200:
        mask = blobs(h, w, rng, n=4)
    polygons = rle.to_polygons(mask)
    assert polygons
    for poly in polygons:
        assert len(poly) % 2 == 0 and len(poly) >= 6
        xs, ys = np.array(poly[0::2]), np.array(poly[1::2])
        assert xs.min() >= 0 and xs.max() <= w and ys.min() >= 0 and ys.max() <= h
    back = rle.from_polygons(polygons, h, w)
    assert iou(back, mask) >= 0.9
    # Simplification actually simplifies.
    exact_vertices = sum(len(p) for p in rle.to_polygons(mask, tolerance=0))
    assert sum(len(p) for p in polygons) < exact_vertices


def test_to_polygons_zero_tolerance_is_exact_without_holes():
    rng = np.random.default_rng(9)
    for i in range(10):
        mask = blobs(120, 90, rng, n=1, spread=0.3 if i % 2 else 0.6)  # one ellipse: no holes
        y0, x0 = (int(v) for v in rng.integers(0, 60, size=2))
        mask[y0 : y0 + int(rng.integers(1, 60)), x0 : x0 + int(rng.integers(1, 60))] = True  # a rectangle
        mask[:3, -3:] = True  # a corner block on the image border
        back = rle.from_polygons(rle.to_polygons(mask, tolerance=0, max_polygons=1000), 120, 90)
        assert np.array_equal(back, mask)
    # Diagonally touching pixels form a single contour.
    diag = np.eye(5, dtype=bool)
    polygons = rle.to_polygons(diag, tolerance=0)
    assert len(polygons) == 1
    assert np.array_equal(rle.from_polygons(polygons, 5, 5), diag)


def test_to_polygons_small_cases():
    assert rle.to_polygons(np.zeros((10, 10), dtype=bool)) == []
    # Real corners stay on pixel corners; clockwise on screen (y down).
    full = [[6.0, 0.0, 6.0, 4.0, 0.0, 4.0, 0.0, 0.0]]
    assert rle.to_polygons(np.ones((4, 6), dtype=np.uint8)) == full
    assert rle.to_polygons(np.ones((4, 6), dtype=np.uint8), tolerance=0) == full
    # One-pixel staircase steps get side-midpoint vertices instead.
    assert rle.to_polygons(np.eye(2, dtype=bool), tolerance=0) == [
        [0.5, 0.0, 1.0, 0.5, 1.5, 1.0, 2.0, 1.5, 1.5, 2.0, 1.0, 1.5, 0.5, 1.0, 0.0, 0.5]
    ]
    single = np.zeros((3, 3), dtype=bool)
    single[1, 1] = True
    assert len(rle.to_polygons(single, tolerance=0)) == 1
    assert rle.to_polygons(single, tolerance=1.0) == []  # too small to survive


def test_to_polygons_drops_holes_orders_by_area_and_caps_count():
    mask = np.zeros((60, 60), dtype=bool)
    mask[5:45, 5:45] = True
    mask[15:35, 15:35] = False  # hole: dropped
    mask[50:55, 50:55] = True  # small second blob
    polygons = rle.to_polygons(mask, tolerance=0)
    assert len(polygons) == 2
    back = rle.from_polygons(polygons[:1], 60, 60)
    assert back[5:45, 5:45].all() and back.sum() == 40 * 40
    assert len(rle.to_polygons(mask, tolerance=0, max_polygons=1)) == 1
    many = np.zeros((40, 40), dtype=bool)
    many[::4, ::4] = True
    assert len(rle.to_polygons(many, tolerance=0)) == 50  # default cap
    assert len(rle.to_polygons(many, tolerance=0, max_polygons=1000)) == 100


def _recursive_douglas_peucker(ring: np.ndarray, tol: float) -> np.ndarray:
    """The textbook algorithm, one segment at a time: what _simplify_ring must keep."""
    pts = np.vstack((ring, ring[:1])).astype(np.float64)
    n = len(ring)
    far = int(np.argmax(((pts[:-1] - pts[0]) ** 2).sum(axis=1)))
    keep = {0, far}

    def split(i: int, j: int) -> None:
        if j - i < 2:
            return
        a, b, inner = pts[i], pts[j], pts[i + 1 : j]
        ab = b - a
        norm = float(np.hypot(ab[0], ab[1]))
        if norm == 0:
            dist = np.hypot(inner[:, 0] - a[0], inner[:, 1] - a[1])
        else:
            dist = np.abs(ab[0] * (inner[:, 1] - a[1]) - ab[1] * (inner[:, 0] - a[0])) / norm
        k = int(np.argmax(dist))
        if dist[k] > tol:
            keep.add(i + 1 + k)
            split(i, i + 1 + k)
            split(i + 1 + k, j)

    split(0, far)
    split(far, n)
    return ring[sorted(keep)]


@pytest.mark.parametrize("tol", [0.5, 1.0, 2.5])
def test_ring_simplification_keeps_what_douglas_peucker_keeps(tol):
    rng = np.random.default_rng(31)
    masks = [blobs(200, 160, rng, n=3, spread=0.5) for _ in range(4)]
    masks += [rng.random((60, 80)) < 0.3 for _ in range(2)]  # noisy: many short rings
    masks.append(np.pad(np.ones((30, 30), dtype=bool), 5))  # a square: collinear runs, ties
    rings = [ring for mask in masks for ring in rle._outer_rings(mask, 1000)]
    assert len(rings) > 50 and max(len(r) for r in rings) > 150
    ours = rle._simplify_rings(rings, tol)  # all at once, as to_polygons calls it
    assert len(ours) == len(rings)
    for ring, simple in zip(rings, ours, strict=True):
        np.testing.assert_array_equal(simple, _recursive_douglas_peucker(ring, tol) if len(ring) >= 4 else ring)


def test_to_polygons_validation():
    with pytest.raises(ValueError, match="2-D"):
        rle.to_polygons(np.zeros(5))
    with pytest.raises(ValueError, match="tolerance"):
        rle.to_polygons(np.zeros((5, 5)), tolerance=-1)
