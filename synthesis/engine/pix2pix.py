"""pix2pix (Isola et al. 2017): a label mask in, a plausible greyscale image out.

- Generator: a U-Net. Input (N, C, S, S), one channel per label class, each in {-1, +1}; output
  (N, 1, S, S) in [-1, 1] (tanh), mapped to [0, 1] at the boundary of this module. Dropout in
  its innermost decoder blocks stays on when generating, as in pix2pix: it is the only source of
  variety, so :meth:`Pix2PixTrainer.generate` takes a seed.
- Discriminator: a PatchGAN on the mask and the image stacked, one real/fake logit per patch.
- Loss: adversarial (least squares by default, or BCE with logits) + ``l1_weight`` x L1, Adam.

Instance norm, not batch norm: a sample's output must not depend on what else is in its batch,
and the batches here are tiny.

Training is repeatable: weights are initialised under a seed, each epoch's order and flips come
from ``numpy.random.default_rng([seed, epoch])`` (so they need no saved state), and torch's RNG
(dropout) is forked, seeded, and saved in every checkpoint. On the CPU a run killed after epoch
k and restarted from its checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._torch import atomic_save, deterministic, digest, forked_rng, pick_device, rng_state, state_digest, to_square

CHECKPOINT = "last.pt"  # the file fit() keeps in its checkpoint_dir
_FORMAT = 1


@dataclass(frozen=True)
class Pix2PixConfig:
    """How to train. ``size`` is the working resolution in pixels (square; inputs are padded and
    resized to it); ``depth`` the number of stride-2 steps in the generator (None: down to a
    4 x 4 bottleneck); ``disc_layers`` the discriminator's stride-2 steps (2: ~34 px patches);
    ``epochs`` counts passes over the training pairs in total, across resumes."""

    size: int = 64
    epochs: int = 30
    batch_size: int = 4
    base_channels: int = 16
    depth: int | None = None
    disc_layers: int = 2
    dropout: float = 0.5
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    l1_weight: float = 100.0
    gan_loss: str = "lsgan"  # "lsgan" (least squares) or "bce" (BCE with logits, the original)
    flip: bool = True  # mirror each pair left-right with probability 1/2 (brains are near-symmetric)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gan_loss not in ("lsgan", "bce"):
            raise ValueError(f"gan_loss must be 'lsgan' or 'bce', not {self.gan_loss!r}")
        if self.size % (2**self.levels) or self.size < 2 ** (self.levels + 1):
            raise ValueError(f"size {self.size} must be a multiple of 2**depth and leave a bottleneck >= 2 px")
        if self.size >> self.disc_layers < 4:
            raise ValueError(f"size {self.size} is too small for {self.disc_layers} discriminator layers")
        for name in ("epochs", "batch_size", "base_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)!r}")

    @property
    def levels(self) -> int:
        return self.depth if self.depth is not None else max(1, int(math.log2(self.size)) - 2)


@dataclass(frozen=True)
class EpochStats:
    """One finished epoch. Losses are means over its batches: ``g_loss`` the generator's whole
    objective (adversarial + l1_weight x L1 on the [-1, 1] scale), ``d_loss`` the
    discriminator's (half the sum over real and fake), ``l1`` the mean absolute error of the
    generated images in [0, 1] intensity units. ``seconds`` is this epoch's wall time,
    ``eta_seconds`` the estimate for the epochs left."""

    epoch: int  # 1-based
    epochs: int
    g_loss: float
    d_loss: float
    l1: float
    seconds: float
    eta_seconds: float


@dataclass
class History:
    """Every epoch trained so far (across resumes); ``cancelled`` says the last fit stopped because
    the progress callback asked it to; ``resumed_from`` the epochs already done when it began."""

    epochs: list[EpochStats] = field(default_factory=list)
    cancelled: bool = False
    resumed_from: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": [asdict(e) for e in self.epochs],
            "cancelled": self.cancelled,
            "resumed_from": self.resumed_from,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls([EpochStats(**e) for e in data["epochs"]], bool(data["cancelled"]), int(data["resumed_from"]))


Progress = Callable[[EpochStats], bool | None]


# --- the networks ----------------------------------------------------------------------------


def _channels(base: int, level: int) -> int:
    return base * min(2**level, 8)


class UNetGenerator(nn.Module):
    """(N, n_classes, S, S) masks in {-1, 1} -> (N, 1, S, S) images in [-1, 1]."""

    def __init__(self, n_classes: int, base: int, levels: int, dropout: float) -> None:
        super().__init__()
        ch = [_channels(base, i) for i in range(levels)]
        self.down = nn.ModuleList()
        for i, c in enumerate(ch):
            layers: list[nn.Module] = [nn.Conv2d(n_classes if i == 0 else ch[i - 1], c, 4, 2, 1)]
            if i > 0:  # pix2pix leaves the first layer unnormalised
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(0.2))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in range(levels - 1, 0, -1):
            inner = i >= levels - 2  # the two innermost decoder blocks carry the dropout noise
            layers = [
                nn.ConvTranspose2d(ch[i] if i == levels - 1 else 2 * ch[i], ch[i - 1], 4, 2, 1),
                nn.InstanceNorm2d(ch[i - 1], affine=True),
            ]
            if inner and dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.ReLU())
            self.up.append(nn.Sequential(*layers))
        self.out = nn.ConvTranspose2d(2 * ch[0] if levels > 1 else ch[0], 1, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up in self.up:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return torch.tanh(self.out(x))


class PatchDiscriminator(nn.Module):
    """(mask, image) -> (N, 1, h, w) logits, one per overlapping patch."""

    def __init__(self, n_classes: int, base: int, layers: int) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(n_classes + 1, base, 4, 2, 1), nn.LeakyReLU(0.2)]
        prev = base
        for i in range(1, layers + 1):
            c = _channels(base, i)
            stride = 2 if i < layers else 1  # the last step widens the patch without shrinking the map
            seq += [nn.Conv2d(prev, c, 4, stride, 1), nn.InstanceNorm2d(c, affine=True), nn.LeakyReLU(0.2)]
            prev = c
        seq.append(nn.Conv2d(prev, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)

    def forward(self, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([mask, image], dim=1))


def _init_weights(module: nn.Module) -> None:
    # pix2pix's N(0, 0.02) convolutions, N(1, 0.02) norm scales.
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.InstanceNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# --- training ------------------------------------------------------------------------------------


class Pix2PixTrainer:
    """Trains a pix2pix generator on (mask, image) pairs and generates images for new masks.

    ``device``: None picks CUDA when available, else the CPU. Weights are initialised from
    ``config.seed`` without touching the caller's torch RNG.
    """

    def __init__(self, config: Pix2PixConfig, n_classes: int, device: str | torch.device | None = None) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, not {n_classes!r}")
        self.config = config
        self.n_classes = n_classes
        self.device = pick_device(device)
        with forked_rng(torch.device("cpu"), seed=config.seed):  # init on the CPU: same weights on any device
            self.generator = UNetGenerator(n_classes, config.base_channels, config.levels, config.dropout)
            self.discriminator = PatchDiscriminator(n_classes, config.base_channels, config.disc_layers)
            self.generator.apply(_init_weights)
            self.discriminator.apply(_init_weights)
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=betas)
        self.history = History()
        self._data: str | None = None  # digest of the pairs trained on
        self._rng: dict[str, Any] | None = None  # torch RNG state after the last epoch

    @property
    def epochs_done(self) -> int:
        return len(self.history.epochs)

    @property
    def version(self) -> str:
        """First 12 hex digits of the sha256 of the generator's weights."""
        return state_digest(self.generator.state_dict())[:12]

    # -- fit --

    def fit(
        self,
        masks: np.ndarray,
        images: np.ndarray,
        *,
        checkpoint_dir: str | Path | None = None,
        progress: Progress | None = None,
    ) -> History:
        """Train until ``config.epochs`` epochs are done in all, and return the history.

        ``masks`` (N, C, H, W) bool with C = n_classes; ``images`` (N, H, W) float in [0, 1];
        any H, W (padded to a square and resized to ``config.size``). With ``checkpoint_dir``,
        the state is saved there atomically after every epoch, and a checkpoint found there on
        entry is resumed from (it must be for the same data and settings: ValueError otherwise).
        ``progress`` gets each epoch's :class:`EpochStats` after the checkpoint is written;
        returning True cancels: fit returns at once with ``history.cancelled`` set (unless that
        was the last epoch anyway). A later fit with the same ``checkpoint_dir`` goes on.
        """
        x, y = self._pairs(masks, images)
        data = digest(x.cpu().numpy(), y.cpu().numpy())
        path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
        if path is not None and path.exists():
            self._restore(torch.load(path, map_location=self.device, weights_only=True))
        if self._data is not None and self._data != data and self.epochs_done:
            raise ValueError("these pairs differ from the ones this generator was trained on; start a new trainer")
        self._data = data
        self.history.cancelled = False
        self.history.resumed_from = self.epochs_done
        cfg = self.config
        started = self.epochs_done
        spent = 0.0
        with deterministic(self.device), forked_rng(self.device, seed=cfg.seed + 1, state=self._rng):
            for epoch in range(started, cfg.epochs):
                t0 = time.perf_counter()
                g, d, l1 = self._epoch(x, y, epoch)
                seconds = time.perf_counter() - t0
                spent += seconds
                eta = spent / (epoch + 1 - started) * (cfg.epochs - epoch - 1)
                stats = EpochStats(epoch + 1, cfg.epochs, g, d, l1, seconds, eta)
                self.history.epochs.append(stats)
                self._rng = rng_state(self.device)
                if path is not None:
                    atomic_save(self._state(), path)
                if progress is not None and progress(stats) and epoch + 1 < cfg.epochs:
                    self.history.cancelled = True
                    break
        return self.history

    def _pairs(self, masks: np.ndarray, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        masks, images = np.asarray(masks), np.asarray(images)
        if masks.ndim != 4 or masks.shape[1] != self.n_classes:
            raise ValueError(f"masks must be (N, {self.n_classes}, H, W), not shape {masks.shape}")
        if images.shape != (masks.shape[0], *masks.shape[2:]):
            raise ValueError(f"images must be (N, H, W) = {(masks.shape[0], *masks.shape[2:])}, not {images.shape}")
        if len(images) == 0:
            raise ValueError("no training pairs")
        low, high = float(images.min()), float(images.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(f"images must lie in [0, 1], not [{low:.3g}, {high:.3g}]")
        images, masks = to_square(images, masks, self.config.size)
        x = torch.as_tensor(masks, dtype=torch.float32, device=self.device) * 2 - 1
        y = torch.as_tensor(images, device=self.device)[:, None] * 2 - 1
        return x, y

    def _epoch(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[float, float, float]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(x))
        flips = torch.as_tensor(rng.random(len(x)) < 0.5, device=self.device) if cfg.flip else None
        self.generator.train()
        self.discriminator.train()
        totals = np.zeros(3)
        for start in range(0, len(x), cfg.batch_size):
            idx = torch.as_tensor(order[start : start + cfg.batch_size], device=self.device)
            xb, yb = x[idx], y[idx]
            if flips is not None:
                f = flips[idx][:, None, None, None]
                xb, yb = torch.where(f, xb.flip(-1), xb), torch.where(f, yb.flip(-1), yb)
            fake = self.generator(xb)

            real_logits = self.discriminator(xb, yb)
            fake_logits = self.discriminator(xb, fake.detach())
            d_loss = 0.5 * (self._adv(real_logits, True) + self._adv(fake_logits, False))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()

            l1 = (fake - yb).abs().mean()
            g_loss = self._adv(self.discriminator(xb, fake), True) + cfg.l1_weight * l1
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
            totals += len(idx) * np.array([g_loss.item(), d_loss.item(), l1.item() / 2])  # /2: [-1,1] -> [0,1]
        g, d, l1_01 = (totals / len(x)).tolist()
        return g, d, l1_01

    def _adv(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        if self.config.gan_loss == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    # -- generate --

    @torch.no_grad()
    def generate(self, masks: np.ndarray, seed: int = 0, batch_size: int = 32) -> np.ndarray:
        """Images for ``masks`` (N, C, H, W) bool: (N, size, size) float32 in [0, 1].

        Dropout stays on (pix2pix's noise), drawn from ``seed``: the same masks and seed give the
        same images. The caller's torch RNG is left as it was.
        """
        masks = np.asarray(masks)
        if masks.ndim != 4 or masks.shape[1] != self.n_classes:
            raise ValueError(f"masks must be (N, {self.n_classes}, H, W), not shape {masks.shape}")
        if len(masks) == 0:
            return np.zeros((0, self.config.size, self.config.size), dtype=np.float32)
        _, square = to_square(None, masks, self.config.size)
        x = torch.as_tensor(square, dtype=torch.float32, device=self.device) * 2 - 1
        self.generator.train()  # keeps dropout on; instance norm has no running statistics to differ
        out = []
        with deterministic(self.device), forked_rng(self.device, seed=seed):
            for start in range(0, len(x), batch_size):
                out.append((self.generator(x[start : start + batch_size])[:, 0] + 1) / 2)
        return torch.cat(out).clamp(0, 1).cpu().numpy().astype(np.float32)

    # -- persistence --

    def save(self, path: str | Path) -> None:
        """Everything needed to generate or to go on training (atomically, like a checkpoint)."""
        atomic_save(self._state(), Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Pix2PixTrainer:
        """A trainer from :meth:`save` (or a checkpoint), on ``device`` (None: CUDA if available)."""
        dev = pick_device(device)
        state = torch.load(Path(path), map_location=dev, weights_only=True)
        trainer = cls(Pix2PixConfig(**state["config"]), int(state["n_classes"]), dev)
        trainer._restore(state)
        return trainer

    def _state(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "config": asdict(self.config),
            "n_classes": self.n_classes,
            "data": self._data,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "history": self.history.to_dict(),
            "rng": self._rng,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != _FORMAT:
            raise ValueError(f"unknown checkpoint format {state.get('format')!r}")
        ours = {k: v for k, v in asdict(self.config).items() if k != "epochs"}  # more epochs may follow
        theirs = {k: v for k, v in state["config"].items() if k != "epochs"}
        if ours != theirs or state["n_classes"] != self.n_classes:
            raise ValueError(f"checkpoint settings {theirs} (classes {state['n_classes']}) differ from {ours}")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.history = History.from_dict(state["history"])
        self._data = state["data"]
        self._rng = state["rng"]
