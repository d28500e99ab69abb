"""What every engine module shares: device choice, seeded and deterministic sections, resizing to
the working resolution, and content digests. Private: import the names from ``synthesis.engine``.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and CUDA).

    For entry points (scripts, notebooks). The engine itself never relies on global state: it
    draws from its own seeded generators and forks torch's, so its results do not depend on what
    ran before it.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels inside, the caller's setting restored after.

    ``warn_only``: the few ops without a deterministic CUDA kernel warn instead of failing, so the
    same code runs everywhere; on the CPU every op used here is deterministic anyway.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be repeatable
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


@contextmanager
def forked_rng(device: torch.device, seed: int | None = None, state: dict[str, Any] | None = None) -> Iterator[None]:
    """Torch's global RNG (dropout draws from it) forked: seeded by ``seed`` or restored from
    ``state`` inside, the caller's stream untouched after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if state is not None:  # .cpu(): a checkpoint loaded onto the GPU brings its RNG states along
            torch.set_rng_state(state["cpu"].cpu())
            if devices and state.get("cuda") is not None:
                torch.cuda.set_rng_state(state["cuda"].cpu(), devices[0])
        elif seed is not None:
            torch.manual_seed(seed)
        yield


def rng_state(device: torch.device) -> dict[str, Any]:
    """Torch's global RNG state (CPU, and the CUDA device's when on one)."""
    cuda = torch.cuda.get_rng_state(device.index or 0) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def to_square(
    images: np.ndarray | None, masks: np.ndarray | None, size: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Bring images (N, H, W) and/or masks (N, C, H, W) to (…, size, size).

    The shorter side is zero-padded (centred) to a square first, so anatomy keeps its aspect
    ratio; then an antialiased bilinear resize (an area average when shrinking). Images come back
    float32 clipped to [0, 1]; masks bool, a pixel foreground where at least half of its area was.
    """
    out_images = out_masks = None
    if images is not None:
        x = _square(torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None], size)
        out_images = x[:, 0].clamp(0.0, 1.0).numpy()
    if masks is not None:
        m = np.asarray(masks)
        if m.ndim != 4:
            raise ValueError(f"masks must be (N, C, H, W), not shape {m.shape}")
        out_masks = (_square(torch.as_tensor(m.astype(np.float32)), size) >= 0.5).numpy()
    return out_images, out_masks


def _square(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    x = F.pad(x, (left, side - w - left, top, side - h - top))
    if side == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def digest(*arrays: np.ndarray) -> str:
    """sha256 (hex) of the arrays' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 (hex) of a module's state dict, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``: a reader (or a run
    killed mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
