"""The demo campaign: the MNI brain slices, played for white and grey matter. Idempotent."""

from __future__ import annotations

from annotations.demo import MNI_DATASET
from annotations.models import Dataset

from . import services
from .models import Campaign

DEMO_CAMPAIGN = "Brain tissue: white and grey matter"


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
