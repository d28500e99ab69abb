"""Is a crowd-labelled, pix2pix-grown dataset worth more than a few expert labels? Measured on
held-out expert labels, with the spread over seeds, whatever the answer.

Images: axial slices of nilearn's MNI ICBM152 2009a T1 template (bench/_crowd.py
``mni_slices``: 112 slices), two classes, white and grey matter, padded to squares and shrunk
to the working size. The stack is split by position, not at random, because neighbouring
slices (1 mm apart) are near copies: three blocks of 8 slices (at 1/6, 1/2 and 5/6 of the
stack) are the test set, the 2 slices either side of each block are dropped, and the other 76
slices are the training pool. Test slices are never simulated, fused, trained on or generated
from.

For each expert count n (5, 10, 20): n evenly spaced training slices are expert-labelled (their
truth is the gold), the rest are crowd slices, labelled by a simulated crowd (bench/_crowd.py,
``mostly_careful`` mix, 5 votes per slice, drawn at native resolution) and fused by
``annotations.fusion.fuse`` per class with the slices' T1 intensities, the expert slices serving as
gold anchors. Arms:

- ``expert_only``: the n expert slices with their gold;
- ``fused``: the crowd slices with their fused labels (no expert slices);
- ``fused_synthetic``: ``fused`` + as many synthetic pairs as the training pool has slices;
- ``expert_synthetic``: ``expert_only`` + the same number of synthetic pairs;
- ``fused_diverse``: ``fused`` + mask-conditioned diversity: three times as many synthetic pairs,
  from masks deformed harder and recombined more often (``DIVERSE``), each mask rendered by the
  generator with three noise seeds;
- ``fused_filtered``: ``fused`` + the third of ``fused_diverse``'s synthetic pairs on which a
  segmenter trained on ``fused`` agrees best with the pair's mask (Dice of its prediction on the
  synthetic image): a pair whose image does not show its mask teaches the wrong thing.

Synthetic pairs: new masks by ``deform_masks`` from the arm's own labels (fused, or expert gold),
images by a pix2pix generator trained on all training-pool slices with their best label (gold on
expert slices, fused on the rest). One crowd, one fusion and one generator per expert count; the
seeds vary the segmenter (initial weights and data order, paired across arms), so the spread
is the downstream model's, not the crowd's or the GAN's. Every arm gets the same number of
segmenter steps.

The realism figure (``synthesis.engine.realism``) measures the synthetic images of
``fused_synthetic`` and the training pool's real images against the held-out test slices (used
as a yardstick only): 1 = the synthetic images are as close to unseen real slices as the real
training slices are. Random halves of the pool would be a useless yardstick: neighbouring
slices are near copies, so the halves are twins. Figures (report bars, GAN losses, a sample
grid) go to var/bench/dataset_value/.

    .venv/bin/python bench/dataset_value.py [--quick]

The published claim is +12.3 % Dice from fused crowd labels + pix2pix; this reports what it
finds. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _crowd  # noqa: E402

from annotations.fusion import FusionImage, Vote, fuse  # noqa: E402
from annotations.metrics import dice  # noqa: E402
from synthesis.engine import (  # noqa: E402
    Pix2PixConfig,
    Pix2PixTrainer,
    Segmenter,
    SegmenterConfig,
    deform_masks,
    loss_curve_png,
    realism_report,
    report_png,
    run_validation,
    sample_grid_png,
    seed_everything,
    to_square,
)

CLASSES = ("white_matter", "grey_matter")
ARMS = ("expert_only", "fused", "fused_synthetic", "expert_synthetic", "fused_diverse", "fused_filtered")
DIVERSE = {"elastic": 0.05, "rotate_deg": 15.0, "scale": 0.12, "mix_share": 0.6}  # deform_masks, harder
SAMPLES_PER_MASK = 3  # generator noise seeds per diverse mask
KEEP_SHARE = 1 / SAMPLES_PER_MASK  # of the diverse pairs, the share fused_filtered keeps
EXPERTS = (5, 10, 20)
CLAIM = 0.123  # the published relative Dice gain of fused crowd labels + pix2pix
MIX, VOTES = "mostly_careful", 5
TEST_BLOCK, GUARD = 8, 2  # test slices per block; slices dropped either side of a block
OUT = ROOT / "var" / "bench" / "dataset_value"


@dataclass(frozen=True)
class Scale:
    size: int  # working resolution, px
    gan_epochs: int
    segmenter: SegmenterConfig
    seeds: tuple[int, ...]


FULL = Scale(64, 60, SegmenterConfig(steps=300), (0, 1, 2))
QUICK = Scale(32, 6, SegmenterConfig(steps=120, lr=1e-2), (0,))  # a smoke test: too short to judge by


def split(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training pool and of the test slices (three blocks, guard bands dropped)."""
    test, guard = [], []
    for centre in (count // 6, count // 2, 5 * count // 6):
        start = centre - TEST_BLOCK // 2
        test += range(start, start + TEST_BLOCK)
        guard += [*range(start - GUARD, start), *range(start + TEST_BLOCK, start + TEST_BLOCK + GUARD)]
    train = np.setdiff1d(np.arange(count), np.concatenate([test, guard]))
    return train, np.array(test)


def crowd_votes(truths: np.ndarray, scans: np.ndarray) -> list[list[_crowd.SimImage]]:
    """Simulated crowd votes per class on the training pool's native-resolution masks (N, C, H, W),
    with the images they were drawn on (N, H, W). One seed for every class, so the same volunteers
    (with the same habits) label both."""
    return [
        _crowd.simulate(list(truths[:, c]), mix=MIX, per_image=VOTES, seed=17, gold_share=0.0, scans=list(scans))[0]
        for c in range(truths.shape[1])
    ]


def fused_labels(votes: list[list[_crowd.SimImage]], gold: set[int]) -> np.ndarray:
    """Fused masks (N, C, H, W) of the training pool, the ``gold`` slices anchoring the fusion."""
    per_class = []
    for sims in votes:
        result = fuse(
            [
                FusionImage(
                    s.key,
                    s.truth.shape,
                    [Vote(v.annotator, v.mask, anchored=v.anchored, edited=v.edited) for v in s.votes],
                    gold=s.truth if i in gold else None,
                    intensity=s.image,
                )
                for i, s in enumerate(sims)
            ]
        )
        per_class.append(np.stack([result.images[s.key].mask for s in sims]))
    return np.stack(per_class, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="32 px, 6 GAN epochs, 120 segmenter steps (lr 1e-2), one seed, 5 experts"
    )
    parser.add_argument(
        "--experts", type=int, nargs="+", choices=EXPERTS, help="expert counts to run (default: all; 5 with --quick)"
    )
    args = parser.parse_args()
    args.experts = args.experts or ([EXPERTS[0]] if args.quick else list(EXPERTS))
    torch.set_num_threads(2)
    seed_everything(0)
    scale = QUICK if args.quick else FULL
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)

    native_images, native_masks = _crowd.mni_slices()
    images, masks = to_square(native_images, native_masks, scale.size)
    pool, test = split(len(images))
    votes = crowd_votes(native_masks[pool], native_images[pool])
    print(
        f"{len(images)} MNI slices at {scale.size} px: {len(pool)} training pool, {len(test)} test (held out); "
        f"crowd {MIX}, {VOTES} votes per slice; {len(scale.seeds)} seed(s); "
        f"segmenter {scale.segmenter.steps} steps; GAN {scale.gan_epochs} epochs"
    )

    rows, gains, label_dice, gan_epoch_s, realism_by, filter_stats = [], {}, {}, [], {}, {}
    realism: dict = {}
    header = f"{'experts':>7}  {'arm':<17}{'train':>6}{'Dice':>15}{'surface Dice':>17}{'vs expert_only':>16}"
    tables = []
    for n in args.experts:
        expert = np.round(np.linspace(0, len(pool) - 1, n)).astype(int)  # positions in the pool
        crowd = np.setdiff1d(np.arange(len(pool)), expert)
        _, fused = to_square(None, fused_labels(votes, set(expert.tolist())), scale.size)
        gold = masks[pool]
        label_dice[str(n)] = float(np.mean([dice(fused[i, c], gold[i, c]) for i in crowd for c in range(len(CLASSES))]))
        best = fused.copy()
        best[expert] = gold[expert]  # gold where an expert labelled, fused elsewhere

        gan = Pix2PixTrainer(Pix2PixConfig(size=scale.size, epochs=scale.gan_epochs, seed=0), len(CLASSES))
        t0 = time.perf_counter()
        history = gan.fit(best, images[pool])
        gan_s = time.perf_counter() - t0
        gan_epoch_s += [e.seconds for e in history.epochs[1:] or history.epochs]  # the first warms up

        rng = np.random.default_rng(n)
        synth_f_masks = deform_masks(fused[crowd], len(pool), rng)
        synth_e_masks = deform_masks(gold[expert], len(pool), rng)
        synth_f, synth_e = gan.generate(synth_f_masks, seed=1), gan.generate(synth_e_masks, seed=2)
        recombined = deform_masks(fused[crowd], len(pool), rng, **DIVERSE)
        diverse = np.concatenate([gan.generate(recombined, seed=10 + k) for k in range(SAMPLES_PER_MASK)])
        diverse_masks = np.concatenate([recombined] * SAMPLES_PER_MASK)
        judge = Segmenter(len(CLASSES), scale.segmenter, seed=100)
        judge.fit(images[pool][crowd], fused[crowd])
        predicted = judge.predict(diverse)
        agreement = np.array(
            [
                np.mean([dice(p[c], m[c]) for c in range(len(CLASSES))])
                for p, m in zip(predicted, diverse_masks, strict=True)
            ]
        )
        kept = np.argsort(-agreement, kind="stable")[: round(KEEP_SHARE * len(diverse))]
        filter_stats[str(n)] = {
            "agreement_kept_mean": float(agreement[kept].mean()),
            "agreement_all_mean": float(agreement.mean()),
        }
        arms = {
            "expert_only": (images[pool][expert], gold[expert]),
            "fused": (images[pool][crowd], fused[crowd]),
            "fused_synthetic": (
                np.concatenate([images[pool][crowd], synth_f]),
                np.concatenate([fused[crowd], synth_f_masks]),
            ),
            "expert_synthetic": (
                np.concatenate([images[pool][expert], synth_e]),
                np.concatenate([gold[expert], synth_e_masks]),
            ),
            "fused_diverse": (
                np.concatenate([images[pool][crowd], diverse]),
                np.concatenate([fused[crowd], diverse_masks]),
            ),
            "fused_filtered": (
                np.concatenate([images[pool][crowd], diverse[kept]]),
                np.concatenate([fused[crowd], diverse_masks[kept]]),
            ),
        }
        t0 = time.perf_counter()
        report = run_validation(
            arms,
            test=(images[test], masks[test]),
            seeds=list(scale.seeds),
            config=scale.segmenter,
            baseline="expert_only",
            class_names=CLASSES,
        )
        validation_s = time.perf_counter() - t0
        # The held-out slices are the yardstick here, never a training input.
        realism_by[str(n)] = realism_report(images[pool], synth_f, reference=images[test], seed=n)
        if n == args.experts[-1]:
            realism = realism_by[str(n)]
            (OUT / "loss_curve.png").write_bytes(loss_curve_png(history))
            shown = crowd[np.round(np.linspace(0, len(crowd) - 1, 8)).astype(int)]  # inferior to superior
            (OUT / "samples.png").write_bytes(
                sample_grid_png(images[pool][shown], gan.generate(fused[shown], seed=3), masks=fused[shown], n=8)
            )
        (OUT / f"report_{n}_experts.png").write_bytes(report_png(report))

        gains[str(n)] = {a: report["relative_gain"][a]["dice"] for a in ARMS[1:]}
        for arm in ARMS:
            a = report["arms"][arm]
            rows.append(
                {
                    "experts": n,
                    "arm": arm,
                    "train_size": a["train_size"],
                    "dice_mean": a["dice_mean"],
                    "dice_sd": a["dice_sd"],
                    "surface_dice_mean": a["surface_dice_mean"],
                    "surface_dice_sd": a["surface_dice_sd"],
                    "seeds": a["seeds"],
                }
            )
            gain = "" if arm == "expert_only" else f"{100 * gains[str(n)][arm]:+.1f} %"
            tables.append(
                f"{n:>7}  {arm:<17}{a['train_size']:>6}{_pm(a['dice_mean'], a['dice_sd']):>15}"
                f"{_pm(a['surface_dice_mean'], a['surface_dice_sd']):>17}{gain:>16}"
            )
        print(
            f"  {n} experts: GAN {gan_s:.0f} s, {len(ARMS) * len(scale.seeds)} segmenters {validation_s:.0f} s "
            f"({time.perf_counter() - started:.0f} s in all)",
            flush=True,
        )

    cuda_epoch_s = None
    if torch.cuda.is_available():  # the same fit on the GPU, for the time per epoch only
        gpu = Pix2PixTrainer(Pix2PixConfig(size=scale.size, epochs=4, seed=0), len(CLASSES), device="cuda")
        cuda_epoch_s = float(np.mean([e.seconds for e in gpu.fit(best, images[pool]).epochs[1:]]))

    print(f"\nDice on {len(test)} held-out test slices (mean ± sd over seeds; both classes averaged)")
    print(header)
    for line in tables:
        print(line)
    print(
        "\nfused crowd labels vs truth on the crowd slices (Dice): "
        + ", ".join(f"{k} experts {v:.3f}" for k, v in label_dice.items())
    )
    gpu_text = f"; CUDA {cuda_epoch_s:.3f} s" if cuda_epoch_s is not None else "; no CUDA here"
    print(f"pix2pix: {np.mean(gan_epoch_s):.2f} s per epoch of {len(pool)} pairs on 2 CPU threads{gpu_text}")
    print(
        "realism of fused_synthetic images (1 = as close to the test slices as real training slices): "
        + ", ".join(f"{k} {realism[k]['ratio']:.2f}" for k in ("intensity", "gradient", "spectrum"))
        + f", overall {realism['overall']:.2f}"
    )
    print(
        "fused_synthetic over expert_only: "
        + ", ".join(f"{k} experts {100 * v['fused_synthetic']:+.1f} %" for k, v in gains.items())
        + f" (claimed: {100 * CLAIM:+.1f} %)"
    )
    over_fused = {
        k: {a: 100 * (v[a] - v["fused"]) for a in ("fused_synthetic", "fused_diverse", "fused_filtered")}
        for k, v in gains.items()
    }
    print(
        "synthesis over fused alone (points of gain over expert_only): "
        + "; ".join(f"{k} experts " + ", ".join(f"{a} {d:+.1f}" for a, d in v.items()) for k, v in over_fused.items())
    )
    print(
        "segmenter agreement of the kept synthetic pairs (fused_filtered) vs all: "
        + ", ".join(
            f"{k} experts {v['agreement_kept_mean']:.3f} vs {v['agreement_all_mean']:.3f}"
            for k, v in filter_stats.items()
        )
    )
    print(f"figures in {OUT.relative_to(ROOT)}/ ({time.perf_counter() - started:.0f} s)")
    print(
        json.dumps(
            {
                "rows": rows,
                "relative_gain_fused_synthetic_over_expert_only": {k: v["fused_synthetic"] for k, v in gains.items()},
                "relative_gain_over_expert_only": gains,
                "claimed_relative_gain": CLAIM,
                "gan_seconds_per_epoch_cpu": float(np.mean(gan_epoch_s)),
                "gan_seconds_per_epoch_cuda": cuda_epoch_s,
                "realism": realism,
                "realism_overall_by_experts": {k: v["overall"] for k, v in realism_by.items()},
                "fused_label_dice": label_dice,
                "synthetic_filter": filter_stats,
                "scale": {
                    "size": scale.size,
                    "gan_epochs": scale.gan_epochs,
                    "segmenter_steps": scale.segmenter.steps,
                    "seeds": list(scale.seeds),
                    "train_pool": int(len(pool)),
                    "test": int(len(test)),
                },
                "quick": args.quick,
                "seconds": round(time.perf_counter() - started, 1),
            },
            allow_nan=False,
        )
    )


def _pm(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f}"


if __name__ == "__main__":
    main()
