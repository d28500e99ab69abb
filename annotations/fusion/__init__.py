"""Label fusion: crowd masks in, expert-grade labels and annotator reliabilities out.

Pure numpy, no Django, so a researcher can use it in a notebook::

    from annotations.fusion import FusionImage, Vote, fuse

    result = fuse([FusionImage("img-1", (H, W), votes=[Vote("u17", mask), ...], gold=None, intensity=pixels)])
    result.images["img-1"].probability, result.annotators["u17"].weight

See ``engine`` for the model, ``sampling`` for active sampling, ``bias`` for the AI model's bias.
"""

from .bias import model_bias
from .engine import MAX_VOTERS, entropy_bits, fuse, model_mask, update
from .sampling import annotation_gain, is_settled
from .types import MODEL, AnnotatorEstimate, FusionImage, FusionResult, ImageResult, Prior, Vote

__all__ = [
    "MAX_VOTERS",
    "MODEL",
    "AnnotatorEstimate",
    "FusionImage",
    "FusionResult",
    "ImageResult",
    "Prior",
    "Vote",
    "annotation_gain",
    "entropy_bits",
    "fuse",
    "is_settled",
    "model_bias",
    "model_mask",
    "update",
]
