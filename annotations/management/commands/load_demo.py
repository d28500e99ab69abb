"""manage.py load_demo: demo accounts, datasets of real images and a campaign. Safe to run again."""

from django.core.management.base import BaseCommand

from annotations.demo import DEMO_PASSWORD, demo_load
from gamification.demo import DEMO_PUPILS, demo_campaign_load, demo_classroom_load


class Command(BaseCommand):
    help = "Create the demo accounts and import the demo datasets (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--mni-slices", type=int, default=24, help="axial MNI slices with gold standards")
        parser.add_argument("--mni-unlabelled", type=int, default=24, help="axial MNI slices without")

    def handle(self, *args, **opts):
        summary = demo_load(mni_slices=opts["mni_slices"], mni_unlabelled=opts["mni_unlabelled"])
        campaign = demo_campaign_load()
        self.stdout.write(f"demo data: {summary.images_created} new images, {summary.golds_created} new gold standards")
        self.stdout.write(f"demo campaign: {campaign.name!r} (public, {campaign.round_size} tasks a round)")
        self.stdout.write(f"demo accounts (password for all: {DEMO_PASSWORD}):")
        for username, role, created in summary.users:
            self.stdout.write(f"  {username:<8} {role:<11} {'created' if created else 'already there'}")
        classroom = demo_classroom_load()
        self.stdout.write(
            f"demo class: {classroom.name!r} of {classroom.teacher.username}, join code {classroom.join_code} "
            f"(until {classroom.join_code_expires_at:%Y-%m-%d}); pupils pupil1..pupil{len(DEMO_PUPILS)}, same password"
        )
