"""pix2pix synthesis and its honest validation. Torch and numpy, no Django, so a researcher can
use it in a notebook::

    from synthesis.engine import Pix2PixConfig, Pix2PixTrainer, deform_masks, run_validation

    trainer = Pix2PixTrainer(Pix2PixConfig(size=64, epochs=30, seed=0), n_classes=2)
    history = trainer.fit(masks, images, checkpoint_dir=Path("ckpt"), progress=print)
    new_masks = deform_masks(masks, 100, np.random.default_rng(0))
    report = run_validation(arms={...}, test=(images, masks), seeds=[0, 1, 2], baseline="expert_only")

Modules: ``pix2pix`` (mask -> image GAN, checkpoints, resume), ``deform`` (new masks from real
ones), ``segmenter`` (the downstream U-Net), ``validation`` (the dataset-value experiment and its
plots), ``realism`` (a download-free realism figure and a sample grid).
"""

from ._torch import pick_device, seed_everything, to_square
from .deform import deform_masks
from .pix2pix import EpochStats, History, Pix2PixConfig, Pix2PixTrainer
from .realism import realism_report, sample_grid_png
from .segmenter import Segmenter, SegmenterConfig, train_segmenter
from .validation import image_hashes, loss_curve_png, report_png, run_validation

__all__ = [
    "EpochStats",
    "History",
    "Pix2PixConfig",
    "Pix2PixTrainer",
    "Segmenter",
    "SegmenterConfig",
    "deform_masks",
    "image_hashes",
    "loss_curve_png",
    "pick_device",
    "realism_report",
    "report_png",
    "run_validation",
    "sample_grid_png",
    "seed_everything",
    "to_square",
    "train_segmenter",
]
