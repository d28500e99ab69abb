"""The demo campaigns: the MNI brain slices, played for white and grey matter, and Tom's class
Year 9 Biology with its pupils and a practice campaign. Idempotent."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import user_ensure
from annotations.demo import DEMO_PASSWORD, MNI_DATASET
from annotations.models import Dataset

from . import classroom_services, services
from .live_sessions import practice_task_mark
from .models import Assignment, Campaign, ClassMember, Classroom

DEMO_CAMPAIGN = "Brain tissue: white and grey matter"
DEMO_CLASS = "Year 9 Biology"
DEMO_TEACHER = "tom"
DEMO_PRACTICE_CAMPAIGN = "Practice: white matter (Year 9 Biology)"
DEMO_PRACTICE_TASKS = 6  # white-matter slices whose expert outline is shown after live rounds
# Demo pupils sign in as pupil1..pupil6 with the demo password; their names are for Tom only.
DEMO_PUPILS = ["Ada", "Ben", "Cleo", "Dev", "Ezra", "Farah"]


def demo_campaign_load() -> Campaign:
    campaign = Campaign.objects.filter(name=DEMO_CAMPAIGN).first()
    if campaign is not None:
        return campaign
    dataset = Dataset.objects.get(name=MNI_DATASET)
    return services.campaign_create(
        owner=dataset.owner,
        dataset=dataset,
        name=DEMO_CAMPAIGN,
        description="Trace the brain's white matter (or grey matter) on MRI slices. "
        "Draw a box to get the AI's suggestion, correct it, submit.",
        label_classes=list(dataset.label_classes.all()),
        round_size=8,
        annotations_per_image=3,
        gold_rate=0.2,
    )


@transaction.atomic
def demo_classroom_load() -> Classroom:
    """Tom's class Year 9 Biology: six pupils (``pupil1``..``pupil6``, the demo password), an
    invite-only practice campaign on the MNI white matter with ``DEMO_PRACTICE_TASKS`` practice
    tasks, assigned to the class (10 tasks each, due in two weeks)."""
    teacher = User.objects.get(username=DEMO_TEACHER)
    dataset = Dataset.objects.get(name=MNI_DATASET)
    white_matter = dataset.label_classes.get(name="white matter")
    campaign = Campaign.objects.filter(name=DEMO_PRACTICE_CAMPAIGN).first()
    if campaign is None:
        campaign = services.campaign_create(
            owner=dataset.owner,
            dataset=dataset,
            name=DEMO_PRACTICE_CAMPAIGN,
            description="Trace the white matter. After each live round the class sees its own outline "
            "next to the expert's.",
            label_classes=[white_matter],
            visibility=Campaign.Visibility.INVITE,
            round_size=5,
            annotations_per_image=3,
            gold_rate=0.2,
        )
        for task in white_matter.tasks.filter(gold__isnull=False).order_by("image__slice_index")[:DEMO_PRACTICE_TASKS]:
            practice_task_mark(task=task, by=dataset.owner)
    services.campaign_join(player=teacher, campaign=campaign, invite_code=campaign.invite_code)  # Tom sees it
    classroom = Classroom.objects.filter(teacher=teacher, name=DEMO_CLASS).first()
    if classroom is None:
        classroom = classroom_services.classroom_create(teacher=teacher, name=DEMO_CLASS)
    elif classroom.join_code_expires_at <= timezone.now():
        classroom = classroom_services.classroom_rotate_code(classroom=classroom)
    for number, name in enumerate(DEMO_PUPILS, start=1):
        pupil, _ = user_ensure(username=f"pupil{number}", password=DEMO_PASSWORD, role=Role.PUPIL)
        ClassMember.objects.get_or_create(classroom=classroom, pupil=pupil, defaults={"real_name": name})
    if not Assignment.objects.filter(classroom=classroom, campaign=campaign).exists():
        classroom_services.assignment_create(
            classroom=classroom, campaign=campaign, target_tasks=10, due_at=timezone.now() + timedelta(days=14)
        )
    return classroom
