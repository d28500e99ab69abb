"""How good are LiteMedSAM's suggestions on real images with ground truth?

Axial slices of nilearn's MNI ICBM152 T1 template; gold standards from its white-matter map
(probability >= 0.5) and, for context, the whole brain (grey + white matter >= 0.5). Prompts:
- box_exact: the gold mask's bounding box;
- box_jitter: that box with each edge moved by up to 10 % of the box's size, as a person draws;
- points_N: N foreground points inside the gold mask, no box;
- box_points_N: the jittered box plus N foreground points (points refine a box);
- initial_class_prior: no prompt at all: the median box of the class on the *other* slices
  (leave one out), which is what the prompt-less initial mask uses;
- box_jitter_int8: box_jitter decoded from the int8-quantised embedding sent to phones.
Reports mean, median and 10th-percentile Dice per prompt. No tuning: this is what it is.

    .venv/bin/python bench/suggest_quality.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotations.io import ReadOptions  # noqa: E402
from annotations.io.nifti import read_nifti, volume_slices  # noqa: E402
from annotations.io.samples import mni_path  # noqa: E402
from annotations.metrics import dice  # noqa: E402
from inference.engine.medsam import (  # noqa: E402
    Manifest,
    MedSAMDecoder,
    MedSAMEncoder,
    dequantise_embedding,
    quantise_embedding,
    validate_prompt,
)

MODEL_DIR = ROOT / "var" / "models" / "litemedsam"


def bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def jitter(box: list[float], size: tuple[int, int], rng: np.random.Generator, amount: float = 0.10) -> list[float]:
    h, w = size
    bw, bh = box[2] - box[0], box[3] - box[1]
    moved = [
        box[0] + rng.uniform(-amount, amount) * bw,
        box[1] + rng.uniform(-amount, amount) * bh,
        box[2] + rng.uniform(-amount, amount) * bw,
        box[3] + rng.uniform(-amount, amount) * bh,
    ]
    return [
        min(max(moved[0], 0.0), w - 2.0),
        min(max(moved[1], 0.0), h - 2.0),
        min(max(moved[2], moved[0] + 2.0), float(w)),
        min(max(moved[3], moved[1] + 2.0), float(h)),
    ]


def inside_points(mask: np.ndarray, count: int, rng: np.random.Generator) -> list[list[float]]:
    """Points well inside the mask (where a person would tap), at pixel centres, as [x, y]."""
    depth = ndimage.distance_transform_edt(mask)
    candidates = np.argwhere(depth >= max(1.0, np.percentile(depth[mask], 50)))
    picks = candidates[rng.choice(len(candidates), size=count, replace=False)]
    return [[float(c) + 0.5, float(r) + 0.5] for r, c in picks]


def load_slices(count: int) -> list[dict]:
    options = ReadOptions(nifti_axis="axial")
    images = {im.slice.index: im.pixels for im in read_nifti(mni_path("t1").read_bytes(), "t1.nii.gz", options)}
    planes = {}
    for kind in ("wm", "gm"):
        slices, _ = volume_slices(mni_path(kind).read_bytes(), f"{kind}.nii.gz", options)
        planes[kind] = {info.index: plane for info, plane in slices}
    wm_area = {i: (p >= 128).sum() for i, p in planes["wm"].items()}
    candidates = sorted(i for i, a in wm_area.items() if a >= 1500)
    chosen = [candidates[round(k)] for k in np.linspace(0, len(candidates) - 1, count)]
    return [
        {
            "index": i,
            "pixels": images[i],
            "white matter": planes["wm"][i] >= 128,
            "brain": (planes["wm"][i].astype(np.float32) + planes["gm"][i]) >= 128,
        }
        for i in chosen
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 slices, 1 jitter draw (under a minute)")
    args = parser.parse_args()
    if not (MODEL_DIR / "manifest.json").exists():
        sys.exit(f"no exported model in {MODEL_DIR}: run `.venv/bin/python manage.py export_medsam` first")
    started = time.perf_counter()
    manifest = Manifest.load(MODEL_DIR)
    encoder, decoder = MedSAMEncoder(manifest), MedSAMDecoder(manifest)
    slices = load_slices(10 if args.quick else 40)
    draws = 1 if args.quick else 3
    rng = np.random.default_rng(0)
    scores: dict[str, dict[str, list[float]]] = {}

    def record(structure: str, name: str, value: float) -> None:
        scores.setdefault(structure, {}).setdefault(name, []).append(value)

    embeddings = [encoder.embed(s["pixels"]) for s in slices]
    for structure in ("white matter", "brain"):
        boxes = [bbox(s[structure]) for s in slices]
        for k, (s, embedding) in enumerate(zip(slices, embeddings, strict=True)):
            gold, size = s[structure], s[structure].shape
            quantised = dequantise_embedding(*quantise_embedding(embedding))

            def predict(emb=embedding, size=size, **prompt) -> np.ndarray:
                return decoder.predict(emb, size, validate_prompt(original_size=size, **prompt)).mask

            record(structure, "box_exact", dice(predict(box=boxes[k]), gold))
            for _ in range(draws):
                box = jitter(boxes[k], size, rng)
                record(structure, "box_jitter", dice(predict(box=box), gold))
                record(structure, "box_jitter_int8", dice(predict(emb=quantised, box=box), gold))
                for n in (1, 3, 5):
                    points = inside_points(gold, n, rng)
                    record(structure, f"points_{n}", dice(predict(points=points, labels=[1] * n), gold))
                    record(structure, f"box_points_{n}", dice(predict(box=box, points=points, labels=[1] * n), gold))
            h, w = size
            others = np.array([[b[0] / w, b[1] / h, b[2] / w, b[3] / h] for j, b in enumerate(boxes) if j != k])
            x0, y0, x1, y1 = np.median(others, axis=0)
            record(structure, "initial_class_prior", dice(predict(box=[x0 * w, y0 * h, x1 * w, y1 * h]), gold))

    print(f"LiteMedSAM ({manifest.version}) on {len(slices)} MNI axial slices, {draws} jitter draw(s)")
    print(f"{'structure':<14}{'prompt':<22}{'mean':>7}{'median':>8}{'p10':>7}{'n':>5}")
    summary: dict[str, dict[str, float]] = {}
    for structure, by_prompt in scores.items():
        for name, values in by_prompt.items():
            v = np.array(values)
            print(f"{structure:<14}{name:<22}{v.mean():7.3f}{np.median(v):8.3f}{np.percentile(v, 10):7.3f}{len(v):5d}")
            summary.setdefault(structure.replace(" ", "_"), {})[name] = round(float(v.mean()), 4)
    wm = summary["white_matter"]
    print(
        f"points after a box change white-matter Dice by {wm['box_points_1'] - wm['box_jitter']:+.3f} (1 point), "
        f"{wm['box_points_5'] - wm['box_jitter']:+.3f} (5 points); int8 embedding costs "
        f"{wm['box_jitter'] - wm['box_jitter_int8']:+.4f}"
    )
    print(f"({time.perf_counter() - started:.0f} s)")
    print(json.dumps({"model_version": manifest.version, "slices": len(slices), "mean_dice": summary}))


if __name__ == "__main__":
    main()
