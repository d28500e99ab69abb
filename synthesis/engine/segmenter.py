"""A small U-Net segmenter: the downstream model that tells whether a dataset is worth more.

Input a greyscale image in [0, 1], output one logit map per label class (classes may overlap:
each is its own sigmoid). Trained with BCE + soft Dice for a fixed number of optimiser steps,
whatever the dataset's size: every arm of a comparison gets the same compute, so a larger arm
wins only by what its data teaches, not by more training. Deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._torch import deterministic, forked_rng, pick_device


@dataclass(frozen=True)
class SegmenterConfig:
    """``steps`` Adam steps of ``batch_size`` pairs drawn without replacement epoch by epoch;
    ``depth`` 2x2 poolings (inputs are zero-padded to a multiple of 2**depth and cropped back);
    ``flip``: mirror a pair left-right with probability 1/2; ``threshold`` on the sigmoid."""

    steps: int = 400
    batch_size: int = 8
    base_channels: int = 8
    depth: int = 3
    lr: float = 5e-3
    flip: bool = True
    threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "base_channels", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)!r}")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(min(8, cout), cout),  # per sample: no train/eval difference on tiny batches
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """(N, 1, H, W) -> (N, n_classes, H, W) logits; H and W multiples of 2**depth."""

    def __init__(self, n_classes: int, base: int, depth: int) -> None:
        super().__init__()
        ch = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(1 if i == 0 else ch[i - 1], ch[i]) for i in range(depth + 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(depth)])
        self.merge = nn.ModuleList([_block(2 * ch[i], ch[i]) for i in range(depth)])
        self.head = nn.Conv2d(ch[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips.pop()], dim=1))
        return self.head(x)


class Segmenter:
    """A trained (or untrained) :class:`UNet` with its input handling."""

    def __init__(self, n_classes: int, config: SegmenterConfig, seed: int, device: str | torch.device | None = None):
        self.config = config
        self.n_classes = n_classes
        self.seed = seed
        self.device = pick_device(device)
        with forked_rng(torch.device("cpu"), seed=seed):
            self.net = UNet(n_classes, config.base_channels, config.depth)
        self.net.to(self.device)
        self.losses: list[float] = []  # mean loss of every 10 steps (fewer at the end)

    def fit(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        progress: Callable[[int, int, float], bool | None] | None = None,
    ) -> list[float]:
        """Train on ``images`` (N, H, W) float [0, 1] and ``masks`` (N, C, H, W) bool for
        ``config.steps`` steps; return the loss record. ``progress(step, steps, loss)`` is called
        every 10 steps; returning True stops early."""
        x, y = self._tensors(images), self._tensors(masks, masks=True)
        if x.shape[0] != y.shape[0] or x.shape[-2:] != y.shape[-2:] or len(x) == 0:
            raise ValueError(f"images {tuple(x.shape)} and masks {tuple(y.shape)} do not pair up (after padding)")
        cfg = self.config
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        rng = np.random.default_rng([self.seed, 1])
        order: list[int] = []
        window: list[float] = []
        self.net.train()
        with deterministic(self.device), forked_rng(self.device, seed=self.seed + 1):
            for step in range(1, cfg.steps + 1):
                while len(order) < cfg.batch_size:  # a fresh shuffle when the epoch runs out
                    order += rng.permutation(len(x)).tolist()
                batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
                idx = torch.as_tensor(batch, device=self.device)
                xb, yb = x[idx], y[idx]
                if cfg.flip:
                    f = torch.as_tensor(rng.random(len(batch)) < 0.5, device=self.device)[:, None, None, None]
                    xb, yb = torch.where(f, xb.flip(-1), xb), torch.where(f, yb.flip(-1), yb)
                loss = bce_dice_loss(self.net(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                window.append(loss.item())
                if step % 10 == 0 or step == cfg.steps:
                    self.losses.append(float(np.mean(window)))
                    window = []
                    if progress is not None and progress(step, cfg.steps, self.losses[-1]):
                        break
        return self.losses

    @torch.no_grad()
    def probabilities(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(N, C, H, W) float32 foreground probabilities for images (N, H, W) in [0, 1]."""
        x = self._tensors(images)
        self.net.eval()
        h, w = np.asarray(images).shape[1:]
        out = [torch.sigmoid(self.net(x[s : s + batch_size])) for s in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, self.n_classes, h, w), dtype=np.float32)
        return torch.cat(out)[:, :, :h, :w].cpu().numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, C, H, W) bool masks for images (N, H, W) in [0, 1]."""
        return self.probabilities(images) >= self.config.threshold

    def _tensors(self, a: np.ndarray, masks: bool = False) -> torch.Tensor:
        a = np.asarray(a, dtype=np.float32)
        if masks and (a.ndim != 4 or a.shape[1] != self.n_classes):
            raise ValueError(f"masks must be (N, {self.n_classes}, H, W), not shape {a.shape}")
        if not masks and a.ndim != 3:
            raise ValueError(f"images must be (N, H, W), not shape {a.shape}")
        t = torch.as_tensor(a if masks else a[:, None], device=self.device)
        m = 2**self.config.depth
        h, w = t.shape[-2:]
        return F.pad(t, (0, -w % m, 0, -h % m))  # bottom/right zero padding: cropped off again


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + (1 - soft Dice), Dice per class over the batch, averaged over
    classes. BCE gives every pixel a gradient; Dice keeps a small class from drowning in
    background."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(0, 2, 3))
    total = p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    soft_dice = (2 * inter + 1) / (total + 1)
    return bce + (1 - soft_dice).mean()


def train_segmenter(
    images: np.ndarray,
    masks: np.ndarray,
    config: SegmenterConfig,
    seed: int,
    device: str | torch.device | None = None,
    progress: Callable[[int, int, float], bool | None] | None = None,
) -> Segmenter:
    """A :class:`Segmenter` trained on the pairs (see :meth:`Segmenter.fit`)."""
    masks = np.asarray(masks)
    if masks.ndim != 4:
        raise ValueError(f"masks must be (N, C, H, W), not shape {masks.shape}")
    model = Segmenter(masks.shape[1], config, seed, device)
    model.fit(images, masks, progress)
    return model
