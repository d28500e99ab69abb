"""Binary masks as COCO run-length encoding (RLE), in pure numpy.

This is the wire format for masks travelling between phones and the server.
It is byte-compatible with ``pycocotools.mask`` but does not import it, so it
can run anywhere numpy does.

Conventions used throughout:

* A mask is a 2-D array of shape ``(H, W)`` = ``(height, width)`` = ``(rows,
  columns)``; ``decode`` returns ``bool`` (Fortran-ordered in memory, as
  pycocotools does), ``encode`` accepts any numeric or bool dtype and treats
  every nonzero pixel as foreground.
* An RLE is ``{"size": [H, W], "counts": ...}``.  ``counts`` lists run lengths
  in pixels, alternating background/foreground and starting with background
  (so a mask whose first pixel is set starts with a 0 run).  Runs walk the mask
  in column-major (Fortran) order, i.e. down the first column, then the
  second, exactly like COCO.
* ``counts`` is either COCO's compressed string (6 bits per character, ASCII
  48..111, runs delta-coded against the run two places back) or a plain list
  of ints ("uncompressed RLE").
* Polygons are COCO polygons: flat lists ``[x0, y0, x1, y1, ...]`` in image
  pixel units, x = column, y = row, where pixel ``(r, c)`` covers the square
  ``[c, c+1] x [r, r+1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_POLYGONS",
    "MAX_POLYGON_CROSSINGS",
    "MAX_POLYGON_VERTICES",
    "area",
    "decode",
    "encode",
    "from_polygons",
    "is_rle",
    "to_polygons",
]

DEFAULT_MAX_PIXELS = 64_000_000
MAX_POLYGONS = 1000
MAX_POLYGON_VERTICES = 100_000
# Bounds the work (and memory: a few int64s each) of rasterising polygons.
# One crossing is one polygon edge passing over one pixel column, so this is
# far above any real annotation but stops e.g. 100k edges spanning a wide image.
MAX_POLYGON_CROSSINGS = 10_000_000

# COCO's string alphabet is ASCII 48..111: 5 value bits + 1 "more" bit per char.
_CHAR_OFFSET = 48
_CHAR_MAX = 111
# Any genuine count delta is below 2**34, which takes at most 7 characters.
# Longer varints are rejected so decoding can never overflow int64.
_MAX_VARINT_CHARS = 7
_POLY_SCALE = 5  # COCO rasterises polygons on a 5x upsampled grid.


# --------------------------------------------------------------------------
# encode / decode / area
# --------------------------------------------------------------------------


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a binary mask as compressed COCO RLE.

    Args:
        mask: 2-D array of shape ``(H, W)`` with ``H, W >= 1``, dtype bool or
            any numeric dtype; every nonzero pixel counts as foreground.

    Returns:
        ``{"size": [H, W], "counts": str}`` where ``counts`` is byte-identical to
        ``pycocotools.mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        ["counts"].decode()`` for 0/1 masks.  Runs are in column-major order.

    Raises:
        ValueError: if ``mask`` is not a non-empty 2-D array.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"mask must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    h, w = (int(v) for v in arr.shape)
    fg = arr if arr.dtype == np.bool_ else arr != 0
    counts = _runs_column_major(fg)
    return {"size": [h, w], "counts": _counts_to_string(counts)}


def decode(
    rle: dict[str, Any],
    *,
    expected_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode a COCO RLE into a mask, validating it completely first.

    Args:
        rle: ``{"size": [H, W], "counts": c}`` with exactly those keys; ``c`` is
            a compressed string (``str`` or ``bytes``) or a list of
            non-negative ints (uncompressed RLE) summing to ``H * W``.
        expected_size: if given, the ``(height, width)`` the mask must have,
            e.g. the size of the image it annotates.
        max_pixels: largest ``H * W`` accepted; checked before anything is
            allocated, so hostile sizes cost nothing.

    Returns:
        ``bool`` array of shape ``(H, W)``, Fortran-ordered in memory as
        pycocotools returns it (use ``np.ascontiguousarray`` if C order
        matters, e.g. before ``tobytes()``).

    Raises:
        ValueError: naming the offending value, for any malformed input.
    """
    h, w, counts = _parse(rle, max_pixels)
    if expected_size is not None:
        eh, ew = (int(v) for v in expected_size)
        if (h, w) != (eh, ew):
            raise ValueError(f"mask is {h}x{w} (height x width) but the image is {eh}x{ew}")
    values = (np.arange(counts.size) & 1).astype(bool)
    flat = np.repeat(values, counts)
    # Runs are column-major: fill (W, H) row-major and return its transpose,
    # which is Fortran-ordered like pycocotools' output (a C-order copy would
    # cost more than the decode itself).
    return flat.reshape(w, h).T


def area(rle: dict[str, Any], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Foreground pixel count of a COCO RLE, without building the mask.

    Validates ``rle`` exactly as :func:`decode` does (raising ``ValueError``)
    and returns the sum of the foreground runs, in pixels.
    """
    _, _, counts = _parse(rle, max_pixels)
    return int(counts[1::2].sum())


def is_rle(obj: object) -> bool:
    """Cheap structural check: does ``obj`` look like a COCO RLE dict?

    True for a dict with exactly the keys ``size`` (a 2-item list/tuple of
    ints) and ``counts`` (str, bytes or list).  Does not parse ``counts``; use
    :func:`decode` or :func:`area` for full validation.
    """
    if not isinstance(obj, dict) or set(obj) != {"size", "counts"}:
        return False
    size = obj["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        return False
    if not all(_is_int(v) for v in size):
        return False
    return isinstance(obj["counts"], (str, bytes, list))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _runs_column_major(fg: np.ndarray) -> np.ndarray:
    """Run lengths (int64) of a 2-D bool mask in column-major order.

    Starts with a background run (0 if ``fg[0, 0]`` is set).  Comparing each
    row with the one above stays in the array's C order, which is several
    times faster than materialising a Fortran-order copy; the change
    positions are then mapped to column-major indices and sorted.
    """
    h, w = fg.shape
    r, c = np.divmod(np.flatnonzero(fg[1:] != fg[:-1]), w)
    within = c * h + r + 1  # change between (r, c) and (r + 1, c)
    # Change between the bottom of column c - 1 and the top of column c.
    across = (np.flatnonzero(fg[0, 1:] != fg[-1, :-1]) + 1) * h
    change = np.sort(np.concatenate((within, across)))
    counts = np.diff(np.concatenate(([0], change, [h * w])))
    if fg[0, 0]:
        counts = np.concatenate(([0], counts))
    return counts


def _counts_to_string(counts: np.ndarray) -> str:
    """COCO's rleToString, vectorised.

    Each count from index 3 on is stored as the difference to the count two
    places back, then written as a little-endian signed varint of 5-bit
    groups; bit 0x20 marks "more groups follow" and 48 is added to each.
    """
    x = counts.astype(np.int64)
    if x.size > 3:
        x[3:] = counts[3:] - counts[1:-2]
    # A value needs n groups when it fits in 5n-bit two's complement.
    nchars = np.ones(x.size, dtype=np.int64)
    for n in range(1, _MAX_VARINT_CHARS):
        limit = 1 << (5 * n - 1)
        nchars += (x < -limit) | (x >= limit)
    width = int(nchars.max()) if x.size else 1
    shifts = 5 * np.arange(width, dtype=np.int64)
    groups = (x[:, None] >> shifts) & 0x1F  # arithmetic shift keeps the sign
    col = np.arange(width)
    groups |= np.where(col < nchars[:, None] - 1, 0x20, 0)
    chars = (groups[col < nchars[:, None]] + _CHAR_OFFSET).astype(np.uint8)
    return chars.tobytes().decode("ascii")


def _parse(rle: dict[str, Any], max_pixels: int) -> tuple[int, int, np.ndarray]:
    """Validate an RLE dict; return ``(H, W, counts as int64 array)``."""
    if not isinstance(rle, dict):
        raise ValueError(f"RLE must be a dict, got {type(rle).__name__}")
    keys = set(rle)
    if keys != {"size", "counts"}:
        missing = sorted(str(k) for k in {"size", "counts"} - keys)
        extra = sorted(str(k) for k in keys - {"size", "counts"})
        raise ValueError(f"RLE keys must be exactly size and counts; missing {missing}, extra {extra}")
    h, w = _parse_size(rle["size"], max_pixels)
    npix = h * w
    raw = rle["counts"]
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii")
        except UnicodeEncodeError as exc:
            raise ValueError(f"RLE counts contain a non-ASCII character at index {exc.start}") from None
    if isinstance(raw, (bytes, bytearray)):
        counts = _string_to_counts(bytes(raw), npix)
    elif isinstance(raw, (list, tuple)):
        counts = _list_to_counts(raw, npix)
    else:
        raise ValueError(f"RLE counts must be a str, bytes or list of ints, got {type(raw).__name__}")
    if counts.size and counts.min() < 0:
        i = int(np.argmax(counts < 0))
        raise ValueError(f"RLE run {i} has negative length {int(counts[i])}")
    total = int(counts.sum())
    if total != npix:
        raise ValueError(f"RLE runs sum to {total} pixels but size {h}x{w} needs {npix}")
    return h, w, counts


def _parse_size(size: object, max_pixels: int) -> tuple[int, int]:
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"mask size must be [height, width], got {size!r}")
    h, w = size
    if not (_is_int(h) and _is_int(w)) or h < 1 or w < 1:
        raise ValueError(f"mask size must be two positive ints [height, width], got {size!r}")
    h, w = int(h), int(w)
    if h * w > max_pixels:
        raise ValueError(f"mask size {h}x{w} is {h * w} pixels, more than the limit of {max_pixels}")
    return h, w


def _list_to_counts(raw: Sequence[object], npix: int) -> np.ndarray:
    # A run list can be longer than H*W+1 only by padding with zero runs;
    # refusing that bounds the work on hostile input.
    if len(raw) > npix + 1:
        raise ValueError(f"RLE has {len(raw)} runs, more than the {npix + 1} a {npix}-pixel mask can have")
    for i, v in enumerate(raw):
        if not _is_int(v):
            raise ValueError(f"RLE counts[{i}] must be an int, got {v!r}")
        if v < 0:
            raise ValueError(f"RLE run {i} has negative length {v}")
        if v > npix:
            raise ValueError(f"RLE run {i} has length {v}, longer than the whole mask ({npix})")
    return np.asarray(raw, dtype=np.int64).reshape(-1)


def _string_to_counts(s: bytes, npix: int) -> np.ndarray:
    """COCO's rleFrString, vectorised and validated."""
    if len(s) > _MAX_VARINT_CHARS * (npix + 1):
        raise ValueError(f"RLE counts string of {len(s)} chars is too long for a {npix}-pixel mask")
    if not s:
        return np.zeros(0, dtype=np.int64)
    b = np.frombuffer(s, dtype=np.uint8)
    bad = (b < _CHAR_OFFSET) | (b > _CHAR_MAX)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"RLE counts has invalid character {chr(b[i])!r} (code {int(b[i])}) at index {i}; "
            f"COCO RLE uses chars 48..111"
        )
    c = (b - _CHAR_OFFSET).astype(np.int64)
    last = (c & 0x20) == 0  # a group without the "more" bit ends a varint
    if not last[-1]:
        raise ValueError(f"RLE counts string is truncated: the varint at the end (index {len(s) - 1}) is unfinished")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_VARINT_CHARS:
        i = int(np.argmax(lengths > _MAX_VARINT_CHARS))
        raise ValueError(
            f"RLE counts has a varint of {int(lengths[i])} chars at index {int(starts[i])}; "
            f"at most {_MAX_VARINT_CHARS} allowed"
        )
    if ends.size > npix + 1:
        raise ValueError(f"RLE has {ends.size} runs, more than the {npix + 1} a {npix}-pixel mask can have")
    pos = np.arange(c.size) - np.repeat(starts, lengths)  # group index within its varint
    x = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    negative = (c[ends] & 0x10) != 0  # sign bit of the final group
    x -= np.where(negative, np.left_shift(1, 5 * lengths), 0)
    # Undo the delta coding: count[i] = x[i] + count[i-2] for i > 2, i.e. a
    # running sum over each parity class, with counts 0..2 stored verbatim.
    counts = x.copy()
    if counts.size > 3:
        counts[1::2] = np.cumsum(x[1::2])
        counts[2::2] = np.cumsum(x[2::2])
    return counts


# --------------------------------------------------------------------------
# polygons -> mask (COCO's rleFrPoly)
# --------------------------------------------------------------------------


def from_polygons(
    polygons: Sequence[Sequence[float]],
    height: int,
    width: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Rasterise COCO polygons to a mask exactly as pycocotools does.

    Equivalent to decoding ``pycocotools.mask.frPyObjects(polygons, height,
    width)`` and OR-ing the results (the union of the polygons).

    Args:
        polygons: up to ``MAX_POLYGONS`` polygons, each a flat sequence
            ``[x0, y0, x1, y1, ...]`` of at least 6 finite numbers (>= 3
            vertices), in pixel units with x = column and y = row; vertices
            must lie within ``[-1, width + 1] x [-1, height + 1]``.  At most
            ``MAX_POLYGON_VERTICES`` vertices in all.  An empty list gives an
            empty mask.
        height, width: mask size ``H, W`` in pixels (positive ints).
        max_pixels: largest ``H * W`` accepted.

    Returns:
        ``bool`` array of shape ``(H, W)`` (Fortran-ordered, like ``decode``).

    Raises:
        ValueError: for malformed polygons or sizes.
    """
    h, w = _parse_size([height, width], max_pixels)
    if not isinstance(polygons, (list, tuple)):
        raise ValueError(f"polygons must be a list of flat coordinate lists, got {type(polygons).__name__}")
    if len(polygons) > MAX_POLYGONS:
        raise ValueError(f"{len(polygons)} polygons given, at most {MAX_POLYGONS} allowed")
    coords = [_check_polygon(i, p, h, w) for i, p in enumerate(polygons)]
    n_vertices = sum(c.size // 2 for c in coords)
    if n_vertices > MAX_POLYGON_VERTICES:
        raise ValueError(f"{n_vertices} polygon vertices given, at most {MAX_POLYGON_VERTICES} allowed")
    npix = h * w
    if not coords:
        return np.zeros((h, w), dtype=bool)

    # Scale to COCO's 5x grid; C casts with (int)(v + .5), which truncates.
    xy = np.concatenate(coords).reshape(-1, 2)
    grid = np.trunc(_POLY_SCALE * xy + 0.5).astype(np.int64)
    sizes = np.array([c.size // 2 for c in coords])
    poly_id = np.repeat(np.arange(len(coords)), sizes)
    # Edge j of a polygon runs from its vertex j to vertex j+1 (wrapping).
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    nxt = np.arange(len(grid)) + 1
    nxt[np.cumsum(sizes) - 1] = first
    x0, y0 = grid[:, 0], grid[:, 1]
    x1, y1 = grid[nxt, 0], grid[nxt, 1]

    crossings = int((np.abs(x1 - x0) // _POLY_SCALE + 1).sum())
    if crossings > MAX_POLYGON_CROSSINGS:
        raise ValueError(
            f"polygons cross {crossings} pixel columns in all, more than the limit of {MAX_POLYGON_CROSSINGS}"
        )

    col, row, pid = _edge_crossings(x0, y0, x1, y1, poly_id, h, w)
    # Each crossing toggles the pixels below it in its column; a pixel is inside
    # a polygon when it has been toggled an odd number of times.  C sorts the
    # positions col*h+row and cancels equal pairs; parity is the same thing.
    pos = col * h + row  # in [0, h*w]; h*w (bottom of last column) is a no-op
    key = np.sort(pid * (npix + 1) + pos)
    uniq, mult = np.unique(key, return_counts=True)
    toggles = uniq[(mult & 1) == 1]
    tpid, tpos = np.divmod(toggles, npix + 1)
    # Pair each polygon's sorted toggles into [start, end) runs; an odd toggle
    # count means the last run reaches the end of the mask.
    rank = np.arange(toggles.size) - np.searchsorted(tpid, tpid)
    n_per = np.bincount(tpid, minlength=len(coords))
    starts = tpos[rank % 2 == 0]
    ends = np.concatenate((tpos[rank % 2 == 1], np.full(int((n_per % 2).sum()), npix)))

    # Union: coverage count over all runs, then flip where it leaves/enters 0.
    ev_pos = np.concatenate((starts, ends))
    ev_delta = np.concatenate((np.ones(starts.size, np.int64), -np.ones(ends.size, np.int64)))
    order = np.argsort(ev_pos, kind="stable")
    ev_pos, ev_delta = ev_pos[order], ev_delta[order]
    upos, first_idx = np.unique(ev_pos, return_index=True)
    coverage = np.cumsum(np.add.reduceat(ev_delta, first_idx)) if ev_pos.size else np.zeros(0, np.int64)
    inside = coverage > 0
    was_inside = np.concatenate(([False], inside[:-1]))
    flips = upos[inside != was_inside]
    flips = flips[flips < npix]
    marks = np.zeros(npix, dtype=np.uint8)
    marks[flips] = 1
    # Cumulative XOR via a wrapping uint8 sum (256 is even, parity survives).
    flat = (np.cumsum(marks, dtype=np.uint8) & 1).astype(bool)
    return flat.reshape(w, h).T  # column-major flat -> (H, W), as in decode


def _check_polygon(i: int, poly: object, h: int, w: int) -> np.ndarray:
    """Validate polygon ``i``; return its coordinates as float64 ``[x0, y0, ...]``."""
    if isinstance(poly, (str, bytes)) or not isinstance(poly, (Sequence, np.ndarray)):
        raise ValueError(f"polygon {i} must be a flat list [x0, y0, x1, y1, ...], got {type(poly).__name__}")
    try:
        arr = np.asarray(poly, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"polygon {i} must contain only numbers") from None
    if arr.ndim != 1:
        raise ValueError(f"polygon {i} must be a flat list [x0, y0, x1, y1, ...], got shape {arr.shape}")
    if arr.size < 6 or arr.size % 2:
        raise ValueError(f"polygon {i} has {arr.size} coordinates; need an even number, at least 6")
    if not np.isfinite(arr).all():
        raise ValueError(f"polygon {i} has a non-finite coordinate")
    xs, ys = arr[0::2], arr[1::2]
    if xs.min() < -1 or xs.max() > w + 1:
        raise ValueError(f"polygon {i} has x (column) outside [-1, {w + 1}] for width {w}: {xs.min()}..{xs.max()}")
    if ys.min() < -1 or ys.max() > h + 1:
        raise ValueError(f"polygon {i} has y (row) outside [-1, {h + 1}] for height {h}: {ys.min()}..{ys.max()}")
    return arr


def _edge_crossings(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    poly_id: np.ndarray,
    h: int,
    w: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where polygon edges cross pixel-column centres, as COCO computes them.

    rleFrPoly walks each edge on the 5x grid, one point per step along its
    major axis (u = x, v = y, rounded with C's truncating ``(int)(a + .5)``).
    Each pair of consecutive points whose u differs yields a candidate at
    ``xd = min(u)`` and ``yd = min(v)``, kept only when ``(xd + .5)/5 - .5`` is
    a column index ``c`` (i.e. ``xd % 5 == 2``) within ``[0, w-1]``; its row is
    ``ceil(clip((yd + .5)/5 - .5, 0, h))``.  The pair's order never matters,
    so each edge is handled on its own and only the points around those
    crossings are evaluated, instead of all ~5x perimeter points.  (Pairs that
    straddle two edges only differ in u for negative x, so never give a valid
    column; the same holds for the lone point of a zero-length edge, where C
    computes 0/0.)

    Returns ``(column, row, polygon id)`` arrays, one entry per crossing.
    """
    dx = np.abs(x1 - x0)
    dy = np.abs(y1 - y0)
    shallow = (dx >= dy) & (dx > 0)
    steep = dx < dy
    # C swaps the endpoints so that the major axis runs forwards.
    flip = (shallow & (x0 > x1)) | (steep & (y0 > y1))
    xs = np.where(flip, x1, x0)
    xe = np.where(flip, x0, x1)
    ys = np.where(flip, y1, y0)
    ye = np.where(flip, y0, y1)

    out_u, out_v, out_p = [], [], []

    # Shallow edges: u = xs + t, v(t) = (int)(ys + s*t + .5) for t in 0..dx.
    e = np.flatnonzero(shallow)
    if e.size:
        s = (ye[e] - ys[e]) / dx[e]
        t0 = (2 - xs[e]) % _POLY_SCALE  # first t with (xs + t) % 5 == 2
        n = np.maximum((dx[e] - 1 - t0) // _POLY_SCALE + 1, 0)  # t <= dx - 1
        idx = np.repeat(np.arange(e.size), n)
        t = np.repeat(t0, n) + _POLY_SCALE * (np.arange(idx.size) - np.repeat(np.cumsum(n) - n, n))
        ys_f, s_i = ys[e][idx].astype(np.float64), s[idx]
        va = np.trunc(ys_f + s_i * t + 0.5)
        vb = np.trunc(ys_f + s_i * (t + 1) + 0.5)
        out_u.append(xs[e][idx] + t)
        out_v.append(np.minimum(va, vb))
        out_p.append(poly_id[e][idx])

    # Steep edges: v = ys + t, u(t) = (int)(xs + s*t + .5) for t in 0..dy,
    # monotone in t with steps of at most 1.  For each k = 5c + 2 between the
    # end values, binary-search the last t before u moves from k to k + 1.
    e = np.flatnonzero(steep & (dx > 0))
    if e.size:
        s = (xe[e] - xs[e]) / dy[e]
        xs_f = xs[e].astype(np.float64)
        dyv = dy[e]
        ua = np.trunc(xs_f + 0.5).astype(np.int64)
        ub = np.trunc(xs_f + s * dyv + 0.5).astype(np.int64)
        lo_u, hi_u = np.minimum(ua, ub), np.maximum(ua, ub)
        k_first = lo_u + (2 - lo_u) % _POLY_SCALE
        n = np.maximum((hi_u - 1 - k_first) // _POLY_SCALE + 1, 0)  # k + 1 <= hi_u
        idx = np.repeat(np.arange(e.size), n)
        k = np.repeat(k_first, n) + _POLY_SCALE * (np.arange(idx.size) - np.repeat(np.cumsum(n) - n, n))
        inc = s[idx] > 0
        xs_i, s_i = xs_f[idx], s[idx]

        def before_step(tt: np.ndarray) -> np.ndarray:
            u = np.trunc(xs_i + s_i * tt + 0.5)
            return np.where(inc, u <= k, u >= k + 1)

        lo = np.zeros(idx.size, dtype=np.int64)  # before_step(lo) holds
        hi = dyv[idx].copy()  # before_step(hi) fails
        while True:
            open_ = hi - lo > 1
            if not open_.any():
                break
            mid = (lo + hi) // 2
            ok = before_step(mid.astype(np.float64))
            lo = np.where(open_ & ok, mid, lo)
            hi = np.where(open_ & ~ok, mid, hi)
        out_u.append(k)
        out_v.append((ys[e][idx] + lo).astype(np.float64))
        out_p.append(poly_id[e][idx])

    if not out_u:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    u = np.concatenate(out_u)
    v = np.concatenate(out_v)
    p = np.concatenate(out_p)
    xd = (u + 0.5) / _POLY_SCALE - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w - 1)
    yd = np.ceil(np.clip((v[keep] + 0.5) / _POLY_SCALE - 0.5, 0, h))
    return xd[keep].astype(np.int64), yd.astype(np.int64), p[keep]


# --------------------------------------------------------------------------
# mask -> polygons (lossy outline for display)
# --------------------------------------------------------------------------


def to_polygons(mask: np.ndarray, tolerance: float = 1.0, *, max_polygons: int = 50) -> list[list[float]]:
    """Simplified outer outlines of a mask, for display on small clients.

    LOSSY: holes are dropped, only the ``max_polygons`` largest outer contours
    are kept and each is simplified with Douglas-Peucker, so
    ``from_polygons(to_polygons(m), H, W)`` only approximates ``m`` (IoU
    typically >= 0.9 for blob-like masks of a few hundred pixels or more).
    Use RLE whenever the exact mask matters.

    Args:
        mask: ``(H, W)`` array; nonzero pixels are foreground.
        tolerance: maximum distance, in pixels, between the simplified outline
            and the unsimplified contour; 0 keeps every vertex, which
            re-rasterises exactly (with ``from_polygons``) for masks without
            holes.
        max_polygons: keep at most this many contours, largest area first.

    Returns:
        One flat ``[x0, y0, x1, y1, ...]`` list (floats) per outer contour,
        x = column, y = row, clockwise on screen, largest enclosed area
        first, within ``[0, W] x [0, H]``.  Vertices are pixel corners where
        the boundary turns sharply and midpoints of pixel sides along
        one-pixel staircases (which smooths diagonal edges).  Diagonally
        touching pixels share a contour.  Contours that simplify to fewer
        than 3 vertices (e.g. single pixels at tolerance 1) are dropped.

    Raises:
        ValueError: if ``mask`` is not 2-D or ``tolerance`` is negative.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {arr.shape}")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    rings = _simplify_rings(_outer_rings(arr != 0, max_polygons), float(tolerance))
    return [ring.astype(np.float64).ravel().tolist() for ring in rings if len(ring) >= 3]


# Edge directions on the pixel-corner grid (y down): E, S, W, N.  +1 mod 4 is a
# right turn, -1 a left turn.
_DIRS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)


def _outer_rings(fg: np.ndarray, limit: int) -> list[np.ndarray]:
    """The ``limit`` largest outer boundary loops of ``fg``, as vertex lists.

    Every pixel side between foreground and background becomes a directed
    edge on the corner grid with the foreground on its right, so outer
    boundaries run clockwise on screen (positive shoelace area with y down)
    and holes the other way.  At a corner shared by two diagonal foreground
    pixels each incoming edge turns left, keeping those pixels in one loop.
    Loops are labelled and ordered with pointer jumping (O(E log E) numpy, no
    per-edge Python), so noisy masks stay fast.

    Returns ``(n, 2)`` float arrays of vertices (x, y) where the boundary
    turns, largest loop first.
    """
    h, w = fg.shape
    p = np.zeros((h + 2, w + 2), dtype=bool)
    p[1:-1, 1:-1] = fg
    # Horizontal sides at corner row y (0..h) between pixel rows y-1 and y.
    above, below = p[:-1, 1:-1], p[1:, 1:-1]
    ty, tx = _nonzero2d(below & ~above)  # top side of a fg pixel: heads east
    by, bx = _nonzero2d(above & ~below)  # bottom side: heads west
    # Vertical sides at corner column x (0..w) between pixel cols x-1 and x.
    left, right = p[1:-1, :-1], p[1:-1, 1:]
    ry, rx = _nonzero2d(left & ~right)  # right side of a fg pixel: heads south
    ly, lx = _nonzero2d(right & ~left)  # left side: heads north
    sx = np.concatenate((tx, bx + 1, rx, lx))
    sy = np.concatenate((ty, by, ry, ly + 1))
    d = np.repeat(np.array([0, 2, 1, 3]), [tx.size, bx.size, rx.size, lx.size])
    n = d.size
    if n == 0 or limit < 1:
        return []
    stride = w + 1
    ex, ey = sx + _DIRS[d, 0], sy + _DIRS[d, 1]
    # (corner, direction) keys are unique per edge; sorting them gives a lookup
    # whose memory grows with the boundary, not the image.
    key = (sy * stride + sx) * 4 + d
    order = np.argsort(key)
    sorted_key = key[order]
    end_key = (ey * stride + ex) * 4

    def edge_at(want: np.ndarray) -> np.ndarray:
        j = np.minimum(np.searchsorted(sorted_key, want), n - 1)
        return np.where(sorted_key[j] == want, order[j], -1)

    # Successor: the outgoing edge at our end corner, preferring a left turn
    # (only ambiguous at diagonal saddles), then straight, then right.
    succ = edge_at(end_key + (d + 3) % 4)
    for turn in (0, 1):
        miss = np.flatnonzero(succ < 0)
        succ[miss] = edge_at(end_key[miss] + (d[miss] + turn) % 4)

    # Label each loop by its smallest edge index (pointer jumping).
    # Once a round changes nothing every label is its loop's minimum.
    label = np.arange(n)
    ptr = succ.copy()
    while True:
        new = np.minimum(label, label[ptr])
        if np.array_equal(new, label):
            break
        label, ptr = new, ptr[ptr]
    # Signed area per loop from the shoelace terms of its edges.
    cross = (sx * ey - ex * sy).astype(np.float64)
    loop_area = 0.5 * np.bincount(label, weights=cross, minlength=n)
    roots = np.flatnonzero((loop_area > 0) & (label == np.arange(n)))
    roots = roots[np.argsort(-loop_area[roots], kind="stable")][:limit]
    if roots.size == 0:
        return []

    # Walk only the kept loops: rank edges by distance from the root, by
    # cutting each loop just before its root and pointer jumping to the cut.
    keep = np.isin(label, roots)
    idx = np.flatnonzero(keep)
    remap = np.full(n, -1, dtype=np.int64)
    remap[idx] = np.arange(idx.size)
    nxt = remap[succ[idx]]
    lab = remap[label[idx]]
    is_root = np.arange(idx.size) == lab
    nxt = np.where(is_root[nxt], np.arange(idx.size), nxt)  # predecessor of root: end
    dist = (nxt != np.arange(idx.size)).astype(np.int64)
    for _ in range(max(1, int(idx.size).bit_length())):
        dist = dist + dist[nxt]
        nxt = nxt[nxt]
    walk = np.lexsort((-dist, lab))  # by loop, then from the root onward
    e = idx[walk]
    loop = lab[walk]
    # Previous edge in ring order: one back, wrapping at each loop's start.
    first = np.flatnonzero(np.r_[True, loop[1:] != loop[:-1]])
    last = np.r_[first[1:], e.size] - 1
    prev = np.arange(e.size) - 1
    prev[first] = last
    # Vertices go where the boundary turns.  On staircases (a straight run of
    # one pixel side) they sit at side midpoints, like a marching-squares
    # contour: it still samples pixel centres exactly but halves the steps
    # the simplifier must smooth over.  Where two runs of >= 2 sides meet it
    # is a real corner and the pixel corner itself is kept, so rectangles and
    # image borders stay square instead of being chamfered.
    turn = d[succ[e]] != d[e]  # the path turns at the end of this edge
    ends = np.flatnonzero(turn)
    end_loop = loop[ends]
    is_first = np.r_[True, end_loop[1:] != end_loop[:-1]]
    is_last = np.r_[end_loop[1:] != end_loop[:-1], True]
    loop_len = np.r_[first[1:], e.size] - first  # indexed by loop rank
    rank_of_end = np.cumsum(np.r_[True, loop[1:] != loop[:-1]])[ends] - 1
    prev_end = np.r_[0, ends[:-1]]
    prev_end[is_first] = ends[is_last] - loop_len[rank_of_end[is_first]]
    run_in = ends - prev_end  # sides in the straight run ending at this turn
    run_out = np.r_[run_in[1:], 0]
    run_out[is_last] = run_in[is_first]
    sharp = np.zeros(e.size, dtype=bool)
    sharp[ends] = (run_in >= 2) & (run_out >= 2)
    soft = turn & ~sharp
    emit_mid = soft | soft[prev]
    emit_corner = turn & sharp
    # Two slots per edge, in path order: its midpoint, then its end corner.
    xy = np.empty((e.size, 2, 2))
    xy[:, 0, 0], xy[:, 0, 1] = (sx[e] + ex[e]) / 2, (sy[e] + ey[e]) / 2
    xy[:, 1, 0], xy[:, 1, 1] = ex[e], ey[e]
    emit = np.stack((emit_mid, emit_corner), axis=1)
    verts = xy[emit]
    loop_of = np.repeat(loop, emit.sum(axis=1))  # loops in ascending root order
    bounds = np.flatnonzero(np.diff(loop_of)) + 1
    rings = np.split(verts, bounds)
    # Back to the caller's order: largest area first.
    ring_root = idx[loop_of[np.concatenate(([0], bounds))]]
    by_root = dict(zip(ring_root.tolist(), rings, strict=True))
    return [by_root[int(r)] for r in roots]


def _nonzero2d(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` for a 2-D array as int64 (row, col); faster via 1-D."""
    return np.divmod(np.flatnonzero(a), a.shape[1])


def _simplify_rings(rings: list[np.ndarray], tol: float) -> list[np.ndarray]:
    """Douglas-Peucker on closed rings ``(n, 2)``; returns each ring's kept vertices.

    Each ring is split at vertex 0 and the vertex farthest from it, then every segment of
    every ring still open is examined at once, level by level, in numpy: the kept vertices
    are the recursive algorithm's (a segment's split depends only on its ends; ties go to the
    first vertex, as ``np.argmax``), at a few numpy calls per level rather than per segment
    (a mask's outline is typically several rings of a few hundred vertices).
    """
    if tol == 0:
        return list(rings)
    todo = [i for i, ring in enumerate(rings) if len(ring) >= 4]
    if not todo:
        return list(rings)
    # All rings in one array, each closed by its first vertex again.
    sizes = np.array([len(rings[i]) for i in todo])
    base = np.cumsum(sizes + 1) - (sizes + 1)
    closed = np.concatenate([np.vstack((rings[i], rings[i][:1])) for i in todo]).astype(np.float64)
    # The farthest vertex from vertex 0, per ring (the closing copy of vertex 0 is at distance 0).
    ring_of = np.repeat(np.arange(len(todo)), sizes + 1)
    far = _first_max(((closed - closed[base][ring_of]) ** 2).sum(axis=1), base, ring_of)[1]
    keep = np.zeros(len(closed), dtype=bool)
    keep[np.concatenate((base, far, base + sizes))] = True
    start, end = np.concatenate((base, far)), np.concatenate((far, base + sizes))
    while True:
        wide = end - start >= 2  # segments with vertices between their ends
        start, end = start[wide], end[wide]
        if start.size == 0:
            break
        inside = end - start - 1
        first = np.cumsum(inside) - inside  # where each segment's vertices begin, flattened
        seg = np.repeat(np.arange(start.size), inside)
        idx = np.arange(seg.size) - first[seg] + start[seg] + 1
        a = closed[start][seg]
        ab = (closed[end] - closed[start])[seg]
        norm = np.hypot(ab[:, 0], ab[:, 1])
        dx, dy = closed[idx, 0] - a[:, 0], closed[idx, 1] - a[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = np.where(norm == 0, np.hypot(dx, dy), np.abs(ab[:, 0] * dy - ab[:, 1] * dx) / norm)
        best, at = _first_max(dist, first, seg)
        split = best > tol
        middle = idx[at[split]]
        keep[middle] = True
        start, end = np.concatenate((start[split], middle)), np.concatenate((middle, end[split]))
    out = list(rings)
    for i, b, n in zip(todo, base.tolist(), sizes.tolist(), strict=True):
        out[i] = rings[i][keep[b : b + n]]
    return out


def _first_max(values: np.ndarray, first: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group of consecutive ``values`` (groups start at ``first``; ``group`` names each
    value's): the maximum, and the position of its first occurrence, as ``np.argmax``."""
    best = np.maximum.reduceat(values, first)
    hit = np.flatnonzero(values == best[group])  # ascending, so grouped
    return best, hit[np.r_[True, group[hit][1:] != group[hit][:-1]]]
