"""manage.py import_images PATH... --dataset NAME: DICOM, NIfTI, PNG/JPEG/TIFF into a dataset."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from accounts.models import User
from annotations import services
from annotations.io import ImageReadError, ReadOptions
from annotations.io.preprocess import CT_WINDOWS
from annotations.models import Dataset
from crowdseg.errors import DomainError


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{raw}: no such file or directory")
    return found


class Command(BaseCommand):
    help = (
        "Import medical images into a dataset. All files are imported or none is; files already in "
        "the dataset are skipped. Folders are searched recursively."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--dataset", required=True, help="dataset name")
        parser.add_argument("--owner", help="username of the researcher who owns a new dataset")
        parser.add_argument("--label-class", action="append", default=[], help="label class of a new dataset")
        parser.add_argument("--ct-window", choices=sorted(CT_WINDOWS), default="soft_tissue")
        parser.add_argument(
            "--axis",
            choices=["axial", "coronal", "sagittal"],
            default="axial",
            help="plane NIfTI volumes are sliced in",
        )
        parser.add_argument(
            "--skip-bad", action="store_true", help="import each file on its own and report the ones that fail"
        )
        parser.add_argument(
            "--keep-file-names",
            action="store_true",
            help="store each file's name with its images (by default they get an opaque name: "
            "file names often hold patient names or IDs)",
        )

    def handle(self, *args, **opts):
        files = _files(opts["paths"])
        if not files:
            raise CommandError("no files to import")
        if opts["skip_bad"]:
            self._import(files, opts)
        else:
            # All or nothing, the new dataset included.
            with transaction.atomic():
                self._import(files, opts)

    def _import(self, files: list[Path], opts) -> None:
        dataset = self._dataset(opts)
        options = ReadOptions(ct_window=opts["ct_window"], nifti_axis=opts["axis"])
        sources = [services.PathSource(p) for p in files]
        bar = tqdm(total=len(sources), unit="file", disable=opts["verbosity"] == 0, file=self.stderr._out)
        created = skipped = 0
        failed: list[str] = []

        def advance(name: str, images: int) -> None:
            bar.set_postfix_str(name[-30:])
            bar.update(1)

        try:
            batches = [[s] for s in sources] if opts["skip_bad"] else [sources]
            for batch in batches:
                try:
                    result = services.images_import(
                        dataset=dataset,
                        sources=batch,
                        options=options,
                        on_file=advance,
                        keep_file_names=opts["keep_file_names"],
                    )
                except (ImageReadError, DomainError, OSError) as exc:
                    if not opts["skip_bad"]:
                        raise CommandError(f"{exc}\nnothing was imported") from None
                    failed.append(str(exc))
                    bar.update(1)
                    continue
                created += len(result.created)
                skipped += result.skipped
        finally:
            bar.close()
        self.stdout.write(
            f"{dataset.name}: {created} images imported, {skipped} already present, from {len(files)} files"
        )
        if failed:
            raise CommandError("these files were not imported:\n" + "\n".join(failed))

    def _dataset(self, opts) -> Dataset:
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is not None:
            return dataset
        if not opts["owner"]:
            raise CommandError(f"dataset {opts['dataset']!r} does not exist; give --owner to create it")
        owner = User.objects.filter(username=opts["owner"]).first()
        if owner is None:
            raise CommandError(f"user {opts['owner']!r} does not exist")
        return services.dataset_create(name=opts["dataset"], owner=owner, label_classes=opts["label_class"])
