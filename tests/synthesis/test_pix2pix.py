"""pix2pix: shapes, repeatability, learning, checkpoints that resume exactly, cancelling. No database."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from synthesis.engine import Pix2PixConfig, Pix2PixTrainer
from synthesis.engine.pix2pix import CHECKPOINT, PatchDiscriminator, UNetGenerator

from . import toy

TINY = Pix2PixConfig(size=32, epochs=3, batch_size=4, base_channels=4, seed=3)


def same_weights(a: Pix2PixTrainer, b: Pix2PixTrainer) -> bool:
    pairs = [(a.generator, b.generator), (a.discriminator, b.discriminator)]
    return all(
        torch.equal(x, y)
        for m, n in pairs
        for x, y in zip(m.state_dict().values(), n.state_dict().values(), strict=True)
    )


def losses(history):
    return [(e.epoch, e.g_loss, e.d_loss, e.l1) for e in history.epochs]  # seconds differ run to run


def test_the_networks_map_masks_to_images_and_pairs_to_patch_logits():
    masks = torch.zeros(2, 3, 32, 32)
    image = UNetGenerator(3, base=4, levels=3, dropout=0.5)(masks)
    assert image.shape == (2, 1, 32, 32)
    assert image.abs().max() <= 1
    assert PatchDiscriminator(3, base=4, layers=2)(masks, image).shape == (2, 1, 6, 6)


def test_it_generates_working_size_images_in_0_1_from_masks_of_any_size():
    _, masks = toy(3, size=40)
    out = Pix2PixTrainer(TINY, n_classes=2, device="cpu").generate(masks[:, :, :, 4:])  # 40 x 36
    assert out.shape == (3, 32, 32)
    assert out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_the_same_seed_gives_the_same_weights_and_images():
    images, masks = toy(8)
    a, b = (Pix2PixTrainer(replace(TINY, epochs=1), 2, "cpu") for _ in range(2))
    a.fit(masks, images)
    b.fit(masks, images)
    assert same_weights(a, b)
    assert a.version == b.version and len(a.version) == 12
    assert np.array_equal(a.generate(masks, seed=5), b.generate(masks, seed=5))
    assert not np.array_equal(a.generate(masks, seed=5), a.generate(masks, seed=6))  # dropout noise


def test_training_lowers_the_l1_error():
    images, masks = toy(8)
    # 32 Adam steps; a higher learning rate than pix2pix's so a 4-channel toy moves in that many.
    trainer = Pix2PixTrainer(replace(TINY, epochs=8, batch_size=2, lr=1e-3), 2, "cpu")
    before = np.abs(trainer.generate(masks) - images).mean()
    history = trainer.fit(masks, images)
    after = np.abs(trainer.generate(masks) - images).mean()
    assert after < 0.7 * before
    assert history.epochs[-1].l1 < history.epochs[0].l1


def test_a_run_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path):
    images, masks = toy(8)
    straight = Pix2PixTrainer(TINY, 2, "cpu")
    straight.fit(masks, images, checkpoint_dir=tmp_path / "a")

    def kill_after_second_epoch(stats):
        if stats.epoch == 2:
            raise KeyboardInterrupt  # as if the worker died right after writing the checkpoint

    with pytest.raises(KeyboardInterrupt):
        Pix2PixTrainer(TINY, 2, "cpu").fit(
            masks, images, checkpoint_dir=tmp_path / "b", progress=kill_after_second_epoch
        )
    resumed = Pix2PixTrainer(TINY, 2, "cpu")  # a fresh process would start from scratch like this
    history = resumed.fit(masks, images, checkpoint_dir=tmp_path / "b")

    assert history.resumed_from == 2
    assert same_weights(straight, resumed)
    assert losses(history) == losses(straight.history)
    assert np.array_equal(straight.generate(masks, seed=1), resumed.generate(masks, seed=1))


def test_cancelling_stops_after_a_checkpoint_and_says_so(tmp_path):
    images, masks = toy(8)
    seen = []

    def cancel(stats):
        seen.append(stats)
        return True

    history = Pix2PixTrainer(TINY, 2, "cpu").fit(masks, images, checkpoint_dir=tmp_path, progress=cancel)

    assert history.cancelled
    assert [s.epoch for s in seen] == [1]
    assert seen[0].epochs == 3 and seen[0].seconds > 0 and seen[0].eta_seconds > 0
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert len(saved["history"]["epochs"]) == 1
    finished = Pix2PixTrainer(TINY, 2, "cpu").fit(masks, images, checkpoint_dir=tmp_path)
    assert not finished.cancelled and len(finished.epochs) == 3


def test_it_refuses_to_resume_a_checkpoint_of_other_pairs(tmp_path):
    images, masks = toy(8)
    config = replace(TINY, epochs=1)
    Pix2PixTrainer(config, 2, "cpu").fit(masks, images, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="differ"):
        Pix2PixTrainer(TINY, 2, "cpu").fit(masks, images[::-1].copy(), checkpoint_dir=tmp_path)


def test_save_and_load_keep_the_generator(tmp_path):
    images, masks = toy(4)
    trainer = Pix2PixTrainer(replace(TINY, epochs=1), 2, "cpu")
    trainer.fit(masks, images)
    trainer.save(tmp_path / "g.pt")
    loaded = Pix2PixTrainer.load(tmp_path / "g.pt", device="cpu")
    assert loaded.version == trainer.version
    assert loaded.history.epochs == trainer.history.epochs
    assert np.array_equal(loaded.generate(masks, seed=2), trainer.generate(masks, seed=2))


@pytest.mark.parametrize(
    "bad",
    [
        lambda im, m: (m, im * 255),  # a 0..255 image
        lambda im, m: (m[:, :1], im),  # one class for a two-class trainer
        lambda im, m: (m, im[:-1]),  # one image short
    ],
)
def test_it_rejects_bad_pairs(bad):
    images, masks = toy(4)
    with pytest.raises(ValueError):
        Pix2PixTrainer(TINY, 2, "cpu").fit(*bad(images, masks))


def test_it_rejects_a_size_its_generator_cannot_halve_down():
    with pytest.raises(ValueError, match="size"):
        Pix2PixConfig(size=40, depth=4)


def test_the_engine_imports_without_django():
    code = "import sys, synthesis.engine; assert 'django' not in sys.modules, 'engine imported Django'"
    subprocess.run([sys.executable, "-c", code], check=True)
