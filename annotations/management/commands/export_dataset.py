"""manage.py export_dataset --dataset NAME --format nnunet|coco|dicom-seg|masks [...]: a research export."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotations import exports, services
from annotations.models import Dataset, ExportJob
from crowdseg.errors import DomainError


class Command(BaseCommand):
    help = (
        "Export a dataset as an nnU-Net v2 raw dataset, COCO (RLE), DICOM SEG and/or masks, with its data "
        "card, into one zip. Runs here, with a progress bar; the same export as the admin's and the API's."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset name")
        parser.add_argument(
            "--format", action="append", required=True, choices=exports.FORMATS, dest="formats",
            help="repeat for several formats in one zip",
        )  # fmt: skip
        parser.add_argument(
            "--content", action="append", choices=exports.CONTENTS, dest="contents",
            help="what to export (repeatable; default: images and fused labels)",
        )  # fmt: skip
        parser.add_argument("--campaign", type=int, help="a campaign id: export its label classes")
        parser.add_argument("--label-class", action="append", dest="label_classes", help="class name (repeatable)")
        parser.add_argument("--min-confidence", type=float, help="leave out fused labels less confident than this")
        parser.add_argument(
            "--review", action="append", choices=["none", "needed", "accepted", "corrected"],
            help="only fused labels in these review states (repeatable)",
        )  # fmt: skip
        parser.add_argument("--nnunet-id", type=int, default=501, help="the NNN of DatasetNNN_<name>")
        parser.add_argument("--ignore-above-bits", type=float, help="nnU-Net ignore label above this uncertainty")
        parser.add_argument("--output", type=Path, help="where to put the zip (default: it stays in the data dir)")

    def handle(self, *args, **opts):
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {opts['dataset']!r}")
        class_ids = None
        if opts["label_classes"]:
            found = dict(dataset.label_classes.filter(name__in=opts["label_classes"]).values_list("name", "pk"))
            unknown = sorted(set(opts["label_classes"]) - set(found))
            if unknown:
                raise CommandError(f"{dataset.name} has no label class {', '.join(map(repr, unknown))}")
            class_ids = list(found.values())
        try:
            job = services.export_start(
                dataset=dataset,
                requested_by=dataset.owner,
                formats=opts["formats"],
                contents=opts["contents"] or ["images", "fused"],
                label_class_ids=class_ids,
                campaign_id=opts["campaign"],
                min_confidence=opts["min_confidence"],
                review=[("" if r == "none" else r) for r in opts["review"]] if opts["review"] else None,
                nnunet_id=opts["nnunet_id"],
                ignore_above_bits=opts["ignore_above_bits"],
                enqueue=False,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        with tqdm(desc="exporting", unit="image", disable=opts["verbosity"] == 0) as bar:

            def show(progress):
                bar.total = progress["total"]
                bar.n = progress["done"]
                bar.refresh()

            job = services.export_run(job_id=job.pk, on_progress=show)
        if job.status != ExportJob.Status.DONE:
            raise CommandError(f"export {job.pk} {job.status}: {job.error}")
        path = services.exports_dir() / job.file_name
        if opts["output"]:
            shutil.copyfile(path, opts["output"])  # the job's own file stays for its download link
            path = opts["output"]
        self.stdout.write(f"export {job.pk}: {path} ({job.file_size / 1e6:.1f} MB)")
        for name, summary in job.summary.items():
            self.stdout.write(f"  {name}: {summary}")
