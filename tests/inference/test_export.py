"""The exporter: ONNX graphs, parity with torch on real images, atomic writes, ViT-B checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from inference import export
from inference.engine.medsam import Manifest, MedSAMDecoder, MedSAMEncoder, prompt_arrays, validate_prompt
from inference.engine.transforms import prepare_image, resized_size
from inference.export import (
    TOLERANCES,
    ExportMismatch,
    TorchMedSAM,
    export_litemedsam,
    export_vit_b,
    measure_parity,
    verification_prompts,
)


@pytest.fixture(scope="module")
def reference() -> TorchMedSAM:
    return TorchMedSAM.litemedsam()


def test_the_export_recorded_its_parity_with_torch(medsam_manifest: Manifest):
    parity = medsam_manifest.parity
    print(parity)
    assert parity["images"] == 2 and parity["prompts"] == 10  # 5 verification prompts each
    assert parity["tolerances"] == TOLERANCES
    # What float32 reordering gives, far inside the tolerances.
    assert parity["embedding_rel_diff_max"] < 1e-4
    assert parity["decoder_logits_rel_diff_max"] < 1e-4
    assert parity["mask_agreement_min"] >= 0.999 and parity["mask_iou_min"] >= 0.99
    assert parity["iou_pred_abs_diff_max"] < 1e-4


def test_onnxruntime_matches_torch_on_real_images(reference, medsam_manifest, real_images):
    figures = measure_parity(reference, medsam_manifest, list(real_images.values()))
    print(figures)
    assert figures["prompts"] == 10
    assert figures["embedding_rel_diff_max"] < 1e-4
    assert figures["mask_agreement_min"] >= 0.999
    assert figures["iou_pred_abs_diff_max"] < 1e-4


def test_points_only_and_box_with_points_match_torch(reference, medsam_manifest, real_images):
    decoder = MedSAMDecoder(medsam_manifest)
    image = real_images["mni"]
    size = image.shape[:2]
    emb = reference.embed(image)
    prompts = [
        validate_prompt(original_size=size, points=[[98, 60]], labels=[1]),
        validate_prompt(original_size=size, points=[[98, 60], [120, 150], [30, 30]], labels=[1, 1, 0]),
        validate_prompt(original_size=size, box=[28, 29, 169, 201], points=[[98, 116], [5, 5]], labels=[1, 0]),
    ]
    h, w = resized_size(size, reference.spec)  # the image in the frame: predict skips the padding
    for prompt in prompts:
        ours = decoder.predict(emb, size, prompt)
        theirs = reference.predict(emb, size, prompt)
        np.testing.assert_array_equal(ours.mask, theirs.mask)
        np.testing.assert_allclose(
            ours.low_res_logits[..., :h, :w],
            theirs.low_res_logits[..., :h, :w],
            atol=1e-4 * np.abs(theirs.low_res_logits).max(),
        )
        assert ours.iou == pytest.approx(theirs.iou, abs=1e-4)


def test_the_torch_reference_is_litemedsams_own_inference(reference, real_images):
    """TorchMedSAM against MedSAMLite.forward + postprocess_masks, as CVPR24_LiteMedSAM_infer.py runs them."""
    model = reference.model
    for image in real_images.values():
        size = image.shape[:2]
        box = verification_prompts(image)[1]
        scale = 256 / max(size)
        box256 = np.array([[v * scale for v in box.box]], dtype=np.float32)
        with torch.no_grad():
            logits = model(torch.from_numpy(prepare_image(image, reference.spec)), box256)
            upscaled = model.postprocess_masks(logits, resized_size(size, reference.spec), size)
        theirs = (torch.sigmoid(upscaled) > 0.5)[0, 0].numpy()
        ours = reference.predict(reference.embed(image), size, box)
        np.testing.assert_array_equal(ours.mask, theirs)


@pytest.mark.parametrize("eps", [1e-6, 30.0])
def test_the_decoder_graph_keeps_the_upscaling_layernorm_whatever_its_epsilon(eps):
    """PromptDecoderGraph (in torch, as exported) against MaskDecoder on a random embedding.

    The upscaling's LayerNorm2d runs folded into the products (``_centred_scaled``) with its
    epsilon carried through the transformer's row scales: LiteMedSAM's 1e-6 never shows in
    the parity checks, so a large one (about the spread of the norm's inputs) stands in for
    a case where it matters.  The reference is TorchMedSAM (the modules' own API).  Logits are
    compared over the whole frame and, with the context cropped to its first 40 token columns,
    over the part the decoder upscales.
    """
    model, _ = export.build_litemedsam()
    pe, md = model.prompt_encoder, model.mask_decoder
    md.output_upscaling[1].eps = eps
    reference = TorchMedSAM(model, export.LITEMEDSAM_SPEC, "litemedsam")
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    size = (256, 256)  # the input frame itself: prompt pixels are the graph's
    prompt = validate_prompt(original_size=size, box=[40, 60, 180, 150], points=[[90, 100]], labels=[1])
    theirs = torch.from_numpy(reference.predict(embedding[0].numpy(), size, prompt).low_res_logits)
    coords, labels = (torch.from_numpy(a) for a in prompt_arrays(prompt, export.LITEMEDSAM_SPEC))
    with torch.no_grad():
        context = export.DecoderContextGraph(pe, md)(embedding)
        graph = export.PromptDecoderGraph(pe, md, (64, 64))
        ours, _ = graph(*context, coords, labels)
        cropped, _ = graph(*context[:-1], context[-1][:, :64, :40], coords, labels)
    scale = theirs.abs().max()
    assert (ours - theirs).abs().max() / scale < 1e-5
    assert (cropped[..., :160] - theirs[..., :160]).abs().max() / scale < 1e-5
    assert (cropped[..., 160:] == export.OUTSIDE_LOGIT).all()


def test_the_graphs_have_the_documented_interface(medsam_manifest):
    def dims(values):
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    context = onnx.load(str(medsam_manifest.context_path))
    assert dims(context.graph.input) == {"image_embeddings": [1, 256, 64, 64]}
    assert dims(context.graph.output) == {
        "image_tokens": [1, 4096, 256],
        "cross_keys": [1, 8, 16, 4096],
        "cross_values": [1, 8, 4096, 16],
        "image_queries": [1, 8, 16, 4096],
        "second_keys": [1, 8, 16, 4096],
        "second_values": [1, 8, 4096, 16],
        "second_queries": [1, 8, 16, 4096],
        "upscale_tokens": [1, 64, 64, 256],
    }
    decoder = onnx.load(str(medsam_manifest.decoder_path))
    assert dims(decoder.graph.input) == {
        **dims(context.graph.output),
        "upscale_tokens": [1, "token_rows", "token_columns", 256],  # a top-left part of the grid
        "point_coords": [1, "num_points", 2],
        "point_labels": [1, "num_points"],
    }
    assert dims(decoder.graph.output) == {"low_res_logits": [1, 1, 256, 256], "iou_predictions": [1, 1]}
    encoder = onnx.load(str(medsam_manifest.encoder_path), load_external_data=False)
    assert dims(encoder.graph.input) == {"image": [1, 3, 256, 256]}
    assert dims(encoder.graph.output) == {"image_embeddings": [1, 256, 64, 64]}
    for graph in (context, decoder):
        assert {o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")} == {17}


def test_the_decoder_graph_computes_no_shapes_from_the_prompt(medsam_manifest, tmp_path):
    """Every size in the per-prompt graph is a constant or -1, but for the crop of the upscaling
    to the tokens ``upscale_tokens`` holds: shape arithmetic on the tokens (as splitting heads by
    ``x.shape``) adds a dozen small nodes to every prompt, and onnxruntime cannot fold it."""
    import onnxruntime as ort

    from inference.engine.medsam import session_options

    options = session_options(1)
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(medsam_manifest.decoder_path), options)
    graph = onnx.load(options.optimized_model_filepath).graph
    assert [n.input[0] for n in graph.node if n.op_type == "Shape"] == ["upscale_tokens"]


def test_verification_prompts_are_valid_and_deterministic(real_images):
    for image in real_images.values():
        prompts = verification_prompts(image)
        assert len(prompts) == 5 and prompts == verification_prompts(image)
        assert [p.box is not None for p in prompts] == [True, True, True, False, True]


def test_check_names_each_bound_exceeded():
    good = {
        "embedding_rel_diff_max": 0.0,
        "decoder_logits_rel_diff_max": 0.0,
        "mask_agreement_min": 1.0,
        "iou_pred_abs_diff_max": 0.0,
    }
    assert export._check(good) == []
    bad = {**good, "mask_agreement_min": 0.9, "embedding_rel_diff_max": float("nan")}
    failures = export._check(bad)
    assert len(failures) == 2
    assert any("mask_agreement_min = 0.9 is below the minimum 0.995" in f for f in failures)
    assert any("embedding_rel_diff_max = nan" in f for f in failures)


def test_a_mismatch_raises_and_leaves_the_old_export_in_place(monkeypatch, tmp_path, real_images):
    out = tmp_path / "model"
    out.mkdir()
    (out / "manifest.json").write_text("old")

    def bad_parity(reference, manifest, images):
        return {"images": 1, "prompts": 1, "embedding_max_abs_diff": 0.0, "embedding_rel_diff_max": 0.0,
                "decoder_logits_rel_diff_max": 0.0, "mask_agreement_min": 0.97, "mask_iou_min": 0.9,
                "iou_pred_abs_diff_max": 0.0}  # fmt: skip

    monkeypatch.setattr(export, "measure_parity", bad_parity)
    with pytest.raises(ExportMismatch, match="mask_agreement_min = 0.97 is below the minimum 0.995") as info:
        export_litemedsam(out, verify_images=[real_images["ct"]])
    assert isinstance(info.value, RuntimeError) and info.value.figures["mask_agreement_min"] == 0.97
    assert (out / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left


def test_verification_images_are_required(tmp_path):
    with pytest.raises(ValueError, match="verify_images is empty"):
        export_litemedsam(tmp_path / "m", verify_images=[])
    with pytest.raises(ValueError, match=r"verify_images\[0\] must be \(H, W, 3\) uint8"):
        export_litemedsam(tmp_path / "m", verify_images=[np.zeros((8, 8), np.uint8)])
    assert not (tmp_path / "m").exists()


def test_replacing_an_export_leaves_no_old_folder(tmp_path):
    work, out = tmp_path / "new", tmp_path / "model"
    work.mkdir()
    (work / "a").write_text("new")
    out.mkdir()
    (out / "a").write_text("old")
    export._replace_dir(work, out)
    assert (out / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="not a state dict"):
        export._load_state(path)


@pytest.mark.slow
def test_a_vit_b_checkpoint_exports_with_medsams_preprocessing(tmp_path, real_images):
    """A randomly initialised segment-anything vit_b saved as a raw state dict (the layout of
    medsam_vit_b.pth); takes about 1.5 minutes on 2 cores, most of it in the ViT-B encoder."""
    from segment_anything import sam_model_registry

    started = time.perf_counter()
    torch.manual_seed(0)
    checkpoint = tmp_path / "medsam_vit_b.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), checkpoint)
    manifest = export_vit_b(checkpoint, tmp_path / "vit_b", verify_images=[real_images["ct"]])
    print(f"ViT-B export: {time.perf_counter() - started:.1f} s", manifest.parity)
    assert manifest.model_name == "medsam-vit-b" and manifest.version.startswith("medsam-vit-b-")
    assert manifest.preprocess.to_dict() == {"input_size": 1024, "mode": "stretch"}
    assert manifest.source["checkpoint"] == "medsam_vit_b.pth"
    assert manifest.parity["mask_agreement_min"] >= 0.999
    assert manifest.parity["embedding_rel_diff_max"] < 1e-4
    image = real_images["mni"]  # not square: stretched to 1024 x 1024
    size = image.shape[:2]
    emb = MedSAMEncoder(manifest).embed(image)
    assert emb.shape == (256, 64, 64)
    prediction = MedSAMDecoder(manifest).predict(emb, size, validate_prompt(original_size=size, box=[20, 30, 150, 200]))
    assert prediction.mask.shape == size

    wrong = tmp_path / "wrong.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1)}, wrong)
    with pytest.raises(RuntimeError, match="Missing key"):
        export_vit_b(wrong, tmp_path / "never", verify_images=[real_images["ct"]])
    assert not (tmp_path / "never").exists()


def test_the_shared_export_is_reused(medsam_model_dir: Path):
    """The fixture's folder is complete, so a second test run would not export again."""
    from .conftest import _complete

    assert _complete(medsam_model_dir)
