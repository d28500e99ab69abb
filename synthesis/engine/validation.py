"""Did the dataset get better? Train the same segmenter on each candidate training set ("arm"),
score it on held-out expert labels, repeat over seeds, and report the spread.

The test set must never have been trained on: :func:`run_validation` refuses (ValueError) an
arm that contains any test image, compared by a hash of the image quantised to 8 bits (so a
float64 copy, or a float32 one, of a test image is caught too). Near-duplicates are not (the
neighbouring slice of a volume, a resized copy): split by patient, or by position in a volume
with a gap, before calling. Each seed fixes the segmenter's
initial weights and data order, the same for every arm, so per-seed gains are paired.

Scores are :func:`annotations.metrics.dice` and :func:`~annotations.metrics.surface_dice`, per
test image and class, averaged over images, then over classes.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from annotations.metrics import BOUNDARY_TOLERANCE_PX, dice, surface_dice

from .pix2pix import EpochStats, History
from .segmenter import SegmenterConfig, train_segmenter

Pairs = tuple[np.ndarray, np.ndarray]  # images (N, H, W) float [0, 1], masks (N, C, H, W) bool
ValidationProgress = Callable[[dict[str, Any]], bool | None]


def image_hashes(images: np.ndarray) -> list[str]:
    """sha256 (hex) of each image (N, H, W) in [0, 1], quantised to 8 bits first."""
    quantised = np.round(np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    return [hashlib.sha256(f"{im.shape}".encode() + im.tobytes()).hexdigest() for im in quantised]


def run_validation(
    arms: Mapping[str, Pairs],
    test: Pairs,
    seeds: Sequence[int],
    config: SegmenterConfig | None = None,
    *,
    baseline: str | None = None,
    class_names: Sequence[str] | None = None,
    tolerance: int = BOUNDARY_TOLERANCE_PX,
    device: str | None = None,
    progress: ValidationProgress | None = None,
) -> dict[str, Any]:
    """Train one segmenter per arm and seed on the arm's pairs; score each on ``test``.

    Every arm and the test set are (images (N, H, W) float in [0, 1], masks (N, C, H, W) bool)
    of one H, W and C. ``baseline`` names the arm the others' relative gains are measured
    against. ``progress`` gets a dict after each trained model (``run``, ``runs``, ``arm``,
    ``seed``, ``dice``, ``seconds``, ``eta_seconds``); returning True stops, and the report
    (flagged ``cancelled``) holds the runs finished so far.

    Returns a JSON-able dict: ``arms`` -> name -> ``train_size``, ``seeds`` (runs done),
    ``dice_mean``/``dice_sd``/``surface_dice_mean``/``surface_dice_sd`` (over seeds; sd is the
    sample sd, None below two seeds), ``per_class`` (the same per class) and ``per_seed``;
    ``relative_gain`` -> arm -> (arm - baseline) / baseline of the mean Dice and surface Dice,
    with the per-seed (paired) gains; plus the settings used. Dice lies in [0, 1].
    """
    config = config or SegmenterConfig()
    test_images, test_masks = _check("test", test)
    shape, classes = test_images.shape[1:], test_masks.shape[1]
    names = list(class_names) if class_names is not None else [f"class_{c}" for c in range(classes)]
    if len(names) != classes:
        raise ValueError(f"{len(names)} class names for {classes} classes")
    if not arms:
        raise ValueError("no arms to compare")
    if baseline is not None and baseline not in arms:
        raise ValueError(f"baseline {baseline!r} is not one of the arms {sorted(arms)}")
    if not seeds:
        raise ValueError("no seeds")
    held_out = set(image_hashes(test_images))
    checked = {}
    for name, pairs in arms.items():
        images, masks = _check(name, pairs)
        if images.shape[1:] != shape or masks.shape[1] != classes:
            raise ValueError(
                f"arm {name!r} is {images.shape[1:]} with {masks.shape[1]} classes; the test set {shape} with {classes}"
            )
        for i, h in enumerate(image_hashes(images)):
            if h in held_out:
                raise ValueError(f"arm {name!r} image {i} is a test image: the test set must be held out")
        checked[name] = (images, masks)

    runs = [(name, seed) for name in checked for seed in seeds]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in checked}
    cancelled = False
    started = time.perf_counter()
    for done, (name, seed) in enumerate(runs, start=1):
        t0 = time.perf_counter()
        model = train_segmenter(*checked[name], config, seed, device)
        predicted = model.predict(test_images)
        per_class = {
            names[c]: {
                "dice": float(np.mean([dice(p, t) for p, t in zip(predicted[:, c], test_masks[:, c], strict=True)])),
                "surface_dice": float(
                    np.mean(
                        [surface_dice(p, t, tolerance) for p, t in zip(predicted[:, c], test_masks[:, c], strict=True)]
                    )
                ),
            }
            for c in range(classes)
        }
        run = {
            "seed": int(seed),
            "dice": float(np.mean([v["dice"] for v in per_class.values()])),
            "surface_dice": float(np.mean([v["surface_dice"] for v in per_class.values()])),
            "per_class": per_class,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        results[name].append(run)
        if progress is not None:
            elapsed = time.perf_counter() - started
            update = {
                "run": done,
                "runs": len(runs),
                "arm": name,
                "seed": int(seed),
                "dice": run["dice"],
                "seconds": run["seconds"],
                "eta_seconds": elapsed / done * (len(runs) - done),
            }
            if progress(update):
                cancelled = done < len(runs)
                break

    report: dict[str, Any] = {
        "baseline": baseline,
        "classes": names,
        "seeds": [int(s) for s in seeds],
        "test_size": int(len(test_images)),
        "image_shape": [int(s) for s in shape],
        "tolerance_px": tolerance,
        "config": asdict(config),
        "cancelled": cancelled,
        "arms": {},
        "relative_gain": {},
    }
    for name, per_seed in results.items():
        summary: dict[str, Any] = {"train_size": int(len(checked[name][0])), "seeds": len(per_seed)}
        summary.update(_spread(per_seed))
        summary["per_class"] = {c: _spread([r["per_class"][c] for r in per_seed]) for c in names}
        summary["per_seed"] = per_seed
        report["arms"][name] = summary
    if baseline is not None and results[baseline]:
        base = report["arms"][baseline]
        base_by_seed = {r["seed"]: r for r in results[baseline]}
        for name, summary in report["arms"].items():
            if name == baseline or not summary["seeds"]:
                continue
            report["relative_gain"][name] = {
                "dice": _gain(summary["dice_mean"], base["dice_mean"]),
                "surface_dice": _gain(summary["surface_dice_mean"], base["surface_dice_mean"]),
                "per_seed_dice": [
                    _gain(r["dice"], base_by_seed[r["seed"]]["dice"])
                    for r in results[name]
                    if r["seed"] in base_by_seed
                ],
            }
    return report


def _check(name: str, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    images, masks = np.asarray(pairs[0], dtype=np.float32), np.asarray(pairs[1]).astype(bool)
    if images.ndim != 3 or masks.ndim != 4 or len(images) != len(masks) or images.shape[1:] != masks.shape[2:]:
        raise ValueError(f"{name}: images must be (N, H, W) and masks (N, C, H, W), not {images.shape}, {masks.shape}")
    if len(images) == 0:
        raise ValueError(f"{name}: no images")
    if images.min() < -1e-6 or images.max() > 1 + 1e-6:
        raise ValueError(f"{name}: images must lie in [0, 1], not [{images.min():.3g}, {images.max():.3g}]")
    return images, masks


def _spread(runs: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in ("dice", "surface_dice"):
        values = np.array([r[key] for r in runs], dtype=np.float64)
        out[f"{key}_mean"] = float(values.mean()) if len(values) else None
        out[f"{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else None
    return out


def _gain(value: float, base: float) -> float | None:
    return (value - base) / base if base else None


# --- figures ---------------------------------------------------------------------------------------


def report_png(report: Mapping[str, Any]) -> bytes:
    """A bar chart of a :func:`run_validation` report: mean Dice and surface Dice per arm, error
    bars one sd over seeds, the training size under each arm. PNG bytes."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a worker thread

    names = list(report["arms"])
    arms = [report["arms"][n] for n in names]
    fig = Figure(figsize=(max(4.0, 1.5 * len(names) + 1.5), 3.6), dpi=110)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "dice", "Dice"), (0.2, "surface_dice", "surface Dice")):
        means = [a[f"{key}_mean"] or 0.0 for a in arms]
        sds = [a[f"{key}_sd"] or 0.0 for a in arms]
        ax.bar(x + offset, means, 0.38, yerr=sds, capsize=3, label=label)
    ax.set_xticks(x, [f"{n}\n(n={a['train_size']})" for n, a in zip(names, arms, strict=True)], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score on held-out test set")
    seeds = max((a["seeds"] for a in arms), default=0)
    ax.set_title(f"{report['test_size']} test images, {seeds} seed(s); bars: mean ± sd", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def loss_curve_png(history: History | Mapping[str, Any] | Sequence[EpochStats]) -> bytes:
    """pix2pix losses per epoch (generator and discriminator on the left axis, L1 in [0, 1]
    intensity units on the right). Takes a :class:`History`, its ``to_dict()``, or epochs."""
    from matplotlib.figure import Figure

    if isinstance(history, History):
        epochs = history.epochs
    elif isinstance(history, Mapping):
        epochs = History.from_dict(history).epochs
    else:
        epochs = list(history)
    fig = Figure(figsize=(5.0, 3.2), dpi=110)
    ax = fig.add_subplot()
    n = [e.epoch for e in epochs]
    ax.plot(n, [e.g_loss for e in epochs], label="generator (adv + λ·L1)")
    ax.plot(n, [e.d_loss for e in epochs], label="discriminator")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    right = ax.twinx()
    right.plot(n, [e.l1 for e in epochs], color="tab:green", linestyle="--", label="L1 (intensity)")
    right.set_ylabel("L1, [0, 1] intensity")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
