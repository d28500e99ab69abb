"""manage.py validate_dataset: does the crowd (and synthesis) make this dataset better? Measured."""

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotations.models import Dataset
from crowdseg.errors import DomainError
from synthesis import services
from synthesis.models import Job


class Command(BaseCommand):
    help = (
        "Train small U-Nets on expert golds alone, fused crowd labels, and each with synthetic pairs; "
        "score them on held-out expert golds. Runs here, with a progress bar."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset name")
        parser.add_argument("--synthesize", action="store_true", help="first train pix2pix and generate pairs")
        parser.add_argument("--size", type=int, default=64, help="working resolution, pixels")
        parser.add_argument("--epochs", type=int, default=30, help="pix2pix epochs")
        parser.add_argument("--steps", type=int, default=400, help="segmenter training steps")
        parser.add_argument("--seeds", type=int, default=3, help="segmenters per arm")

    def handle(self, *args, **opts):
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {opts['dataset']!r}")
        if opts["synthesize"]:
            self._run(dataset, Job.Kind.PIX2PIX, {"size": opts["size"], "epochs": opts["epochs"]})
        job = self._run(
            dataset, Job.Kind.VALIDATION, {"size": opts["size"], "steps": opts["steps"], "seeds": opts["seeds"]}
        )
        report = job.result
        self.stdout.write(f"held-out expert images: {report['held_out_images']}")
        for name, arm in report["arms"].items():
            sd = "n/a" if arm["dice_sd"] is None else f"{arm['dice_sd']:.3f}"
            self.stdout.write(
                f"  {name:<17} Dice {arm['dice_mean']:.3f} ± {sd}  surface Dice {arm['surface_dice_mean']:.3f}"
                f"  ({arm['train_size']} training pairs, {arm['seeds']} seeds)"
            )
        for name, why in report["skipped_arms"].items():
            self.stdout.write(f"  {name:<17} skipped: {why}")
        self.stdout.write(json.dumps({"relative_gain": report.get("relative_gain", {})}, default=str))

    def _run(self, dataset, kind, params) -> Job:
        try:
            job = services.job_start(dataset=dataset, kind=kind, created_by=None, params=params, enqueue=False)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        with tqdm(desc=Job.Kind(kind).label, unit="step") as bar:

            def show(progress):
                bar.total = progress["total"]
                bar.n = progress["done"]
                bar.set_postfix_str(progress["stage"])
                bar.refresh()

            job = services.job_run(job_id=job.pk, on_progress=show)
        if job.status != Job.Status.DONE:
            raise CommandError(f"job {job.pk} {job.status}: {job.error}")
        return job
