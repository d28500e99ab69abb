"""Research exports at scale: 10,000 fused 256 x 256 labels with 5 raters each, exported as an
nnU-Net v2 raw dataset by the export job's worker code (``annotations.services.export_run``),
and side by side with the naive peer: the same cases loaded into memory first, then written.

Data (a fresh SQLite database in a temporary data folder): one label class; each image one
axial MNI ICBM152 slice (white-matter map >= 0.5 as its fused label, a soft probability map,
confidence 0.9), zero-padded to 256 x 256; 5 raters per image from a pool of 40, each mask the
fused label shifted by up to 2 pixels. Images cycle over the 64 distinct slices (model inputs
are files; 10,000 distinct ones would only add disk). Every measured export runs in its own
process, started after the data exist, so ``peak_rss_mb`` is the worker's own peak resident
memory (``ru_maxrss``) including Django and the libraries it loads; ``baseline_rss_mb`` is that
process before it exports. Other formats (COCO, masks) are timed the same way on the full set.

    .venv/bin/python bench/export.py [--quick] [--images N] [--repeat R]

The machine may be shared: each figure is the median of ``--repeat`` runs. The last line is JSON
with ``images``, ``seconds``, ``peak_rss_mb`` and ``formats``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SIZE = 256
RATERS_PER_IMAGE, RATER_POOL, DISTINCT_SLICES = 5, 40, 64
TARGET_SECONDS, TARGET_RSS_MB = 60.0, 500.0


# -- inside the child processes (Django set up) ----------------------------------------------------


def _setup_django() -> None:
    import django

    django.setup()


def populate(images: int) -> dict:
    """Create the dataset: ``images`` images with fused labels and 5 raters each."""
    import io

    import nibabel as nib
    import numpy as np
    from django.core.files.base import ContentFile

    from accounts.models import User
    from accounts.services import user_ensure
    from annotations import figures, services
    from annotations.io.samples import mni_path
    from annotations.models import Annotation, FusedLabel, Image, Task
    from inference.engine import rle

    owner, _ = user_ensure(username="rachel", password="bench-password-1", role="researcher")
    dataset = services.dataset_create(name="bench brain", owner=owner, label_classes=["white matter"])
    label_class = dataset.label_classes.get()
    raters = [User.objects.create(username=f"rater{i}", pseudonym=f"bench-{i}") for i in range(RATER_POOL)]
    wm = np.asarray(nib.load(mni_path("wm")).dataobj)
    t1 = np.asarray(nib.load(mni_path("t1")).dataobj, dtype=np.float32)
    zs = [z for z in range(wm.shape[2]) if (wm[:, :, z] >= 128).sum() >= 1500]
    zs = [zs[round(k)] for k in np.linspace(0, len(zs) - 1, DISTINCT_SLICES)]
    slices = []
    storage = Image._meta.get_field("model_input").storage
    for n, z in enumerate(zs):
        mask = np.zeros((SIZE, SIZE), bool)
        grey = np.zeros((SIZE, SIZE), np.uint8)
        plane = np.flipud(wm[:, :, z].T)
        h, w = plane.shape
        mask[:h, :w] = plane >= 128
        intensity = np.flipud(t1[:, :, z].T)
        grey[:h, :w] = np.clip(intensity / max(float(intensity.max()), 1.0) * 255, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        np.save(buf, np.repeat(grey[..., None], 3, axis=2), allow_pickle=False)
        name = storage.save(f"model-input/bench/{n}.npy", ContentFile(buf.getvalue()))
        probability = np.where(mask, 0.95, 0.03).astype(np.float32)
        shifted = [rle.encode(np.roll(mask, (k % 5) - 2, axis=k % 2)) for k in range(RATERS_PER_IMAGE)]
        slices.append((name, rle.encode(mask), int(mask.sum()), figures.grey_png(probability), shifted))
    rng = np.random.default_rng(0)
    batch = 1000
    for start in range(0, images, batch):
        rows = []
        for i in range(start, min(images, start + batch)):
            name = slices[i % DISTINCT_SLICES][0]
            rows.append(
                Image(
                    dataset=dataset, modality="MR", source_format="nifti", source_name=f"nifti-{i // 100:016x}",
                    source_sha256=f"{i // 100:064x}", frame_key=f"axial-{i % 100}", width=SIZE, height=SIZE,
                    display="display/none.png", model_input=name, metadata={"pixel_spacing_mm": [1.0, 1.0]},
                    slice_axis="axial", slice_index=i % 100, slice_count=100,
                )
            )  # fmt: skip
        created = Image.objects.bulk_create(rows)
        tasks = Task.objects.bulk_create(Task(image=image, label_class=label_class) for image in created)
        fused, votes = [], []
        for offset, task in enumerate(tasks):
            _, mask_rle, area, probability_png, shifted = slices[(start + offset) % DISTINCT_SLICES]
            fused.append(
                FusedLabel(
                    task=task, mask=mask_rle, area=area, probability=probability_png, confidence=0.9,
                    votes=RATERS_PER_IMAGE, annotation_count=RATERS_PER_IMAGE, settled=True,
                )
            )  # fmt: skip
            for k, who in enumerate(rng.choice(RATER_POOL, RATERS_PER_IMAGE, replace=False)):
                votes.append(
                    Annotation(
                        task=task, annotator=raters[who], mask=shifted[k], area=area,
                        client_key=f"{task.pk}-{k}",
                    )
                )  # fmt: skip
        FusedLabel.objects.bulk_create(fused)
        Annotation.objects.bulk_create(votes)
    return {"dataset": dataset.pk, "label_class": label_class.pk, "annotations": Annotation.objects.count()}


def measure(method: str, formats: list[str], limit: int | None) -> dict:
    """Export in this process; wall seconds and this process's peak RSS."""
    from annotations import exports, selectors, services
    from annotations.models import Dataset, ExportJob

    dataset = Dataset.objects.get(name="bench brain")
    if limit is not None:
        _limit_records(selectors, limit)  # both methods export the same first ``limit`` images
    baseline = _rss_mb()
    job = services.export_start(dataset=dataset, requested_by=dataset.owner, formats=formats, enqueue=False)
    started = time.perf_counter()
    if method == "streaming":
        job = services.export_run(job_id=job.pk)
        assert job.status == ExportJob.Status.DONE, job.error
        size = job.file_size
    else:
        # The peer: read every case into memory, then write them (what a first implementation does).
        records = selectors.export_records(services._export_selection(job))
        index_of = {job.selection["label_classes"][0]: 1}
        groups: dict = {}
        cases = [services._export_case(r, n, index_of, groups, False) for n, r in enumerate(records, start=1)]
        job = ExportJob.objects.select_related("dataset").get(pk=job.pk)
        target = services.exports_dir() / f"naive-{job.pk}.zip"
        classes = (exports.ExportClass(1, "white matter"),)
        spec = exports.ExportSpec(
            name=dataset.name, classes=classes, formats=tuple(formats), contents=("images", "fused")
        )
        label_class = dataset.label_classes.get()
        selection = services._export_selection(job)
        exports.export_write(
            target, spec, iter(cases), facts=services._export_facts(job, selection, [label_class]),
            reliability_csv="", modality="MR",
        )  # fmt: skip
        size = target.stat().st_size
    seconds = time.perf_counter() - started
    for path in services.exports_dir().glob("*.zip"):
        path.unlink()
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "baseline_rss_mb": baseline, "zip_mb": size / 1e6}


def _limit_records(selectors, limit: int) -> None:
    """Cut the selection to its first ``limit`` images (by id range: an IN list of thousands of
    ids would slow every query of the export and distort the comparison)."""
    original = selectors.export_images

    def limited(selection):
        ids = original(selection).order_by("pk").values_list("pk", flat=True)
        last = ids[limit - 1] if ids.count() >= limit else None
        return original(selection) if last is None else original(selection).filter(pk__lte=last)

    selectors.export_images = limited


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(args) -> None:
    _setup_django()
    if args.child == "populate":
        result = populate(args.images)
    else:
        result = measure(args.child, args.formats.split(","), args.limit)
    print(json.dumps(result), flush=True)


# -- the driver -------------------------------------------------------------------------------------


def run_child(server, *argv: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv], cwd=ROOT, env=server.env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 images, one run each: under a minute")
    parser.add_argument("--images", type=int, help="images to export (default 10,000; --quick 1,000)")
    parser.add_argument("--peer-images", type=int, help="images for the side-by-side with the naive peer")
    parser.add_argument("--repeat", type=int, help="runs per figure (default 3; --quick 1)")
    parser.add_argument("--child", choices=["populate", "streaming", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--formats", default="nnunet", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.images = args.images or 0
        child(args)
        return

    from _server import Server

    images = args.images or (1000 if args.quick else 10_000)
    peer_images = min(images, args.peer_images or (500 if args.quick else 2000))
    repeat = args.repeat or (1 if args.quick else 3)
    server = Server()
    print(f"setting up: {images:,} images x {RATERS_PER_IMAGE} raters in {server.data_dir} ...", flush=True)
    server.manage("migrate", "--verbosity", "0")
    started = time.perf_counter()
    made = run_child(server, "--child", "populate", "--images", str(images))
    print(f"  {made['annotations']:,} annotations in {time.perf_counter() - started:.0f} s", flush=True)

    headline = median_of([run_child(server, "--child", "streaming") for _ in range(repeat)])
    print(
        f"nnU-Net export, {images:,} images: {headline['seconds']:.1f} s (target <= {TARGET_SECONDS:.0f}), "
        f"peak RSS {headline['peak_rss_mb']:.0f} MB (target <= {TARGET_RSS_MB:.0f}; "
        f"{headline['baseline_rss_mb']:.0f} MB before exporting), zip {headline['zip_mb']:.0f} MB",
        flush=True,
    )
    formats = {"nnunet": headline["seconds"]}
    for name in ("coco", "masks"):
        other = median_of([run_child(server, "--child", "streaming", "--formats", name) for _ in range(repeat)])
        formats[name] = other["seconds"]
        print(f"{name} export, {images:,} images: {other['seconds']:.1f} s, peak RSS {other['peak_rss_mb']:.0f} MB")

    limit = ["--limit", str(peer_images)]
    side = {
        method: median_of([run_child(server, "--child", method, *limit) for _ in range(repeat)])
        for method in ("streaming", "naive")
    }
    s, n = side["streaming"], side["naive"]
    print(f"side by side on {peer_images:,} images (nnU-Net):")
    print(f"  {'':<10} {'seconds':>8} {'peak RSS MB':>12} {'above baseline MB':>18}")
    for method, r in side.items():
        above = r["peak_rss_mb"] - r["baseline_rss_mb"]
        print(f"  {method:<10} {r['seconds']:>8.1f} {r['peak_rss_mb']:>12.0f} {above:>18.0f}")
    growth = (n["peak_rss_mb"] - n["baseline_rss_mb"]) / max(s["peak_rss_mb"] - s["baseline_rss_mb"], 1.0)
    print(f"  naive / streaming: time x{n['seconds'] / s['seconds']:.2f}, memory above baseline x{growth:.1f}")
    print(
        json.dumps(
            {
                "images": images,
                "seconds": headline["seconds"],
                "peak_rss_mb": headline["peak_rss_mb"],
                "formats": formats,
                "baseline_rss_mb": headline["baseline_rss_mb"],
                "peer_images": peer_images,
                "naive_over_streaming_seconds": round(n["seconds"] / s["seconds"], 2),
                "naive_over_streaming_memory_growth": round(growth, 1),
                "repeat": repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
