"""Factories for tests: people with roles, datasets, and images imported the real way."""

from __future__ import annotations

import io
from datetime import timedelta

import factory
import numpy as np
from django.utils import timezone
from PIL import Image as PILImage

from accounts.models import Role, User
from annotations import services
from annotations.models import Dataset, Image

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    role = Role.VOLUNTEER
    pseudonym = factory.Sequence(lambda n: f"calm-otter-{n:04d}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(self, create, extracted, **kwargs):
        if create:
            self.save()


class ResearcherFactory(UserFactory):
    role = Role.RESEARCHER


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"dataset {n}")
    owner = factory.SubFactory(ResearcherFactory)

    @factory.post_generation
    def label_classes(self, create, extracted, **kwargs):
        if create:
            for name in extracted if extracted is not None else ["liver"]:
                services.label_class_create(dataset=self, name=name)


def png_bytes(height: int = 48, width: int = 64, seed: int = 0, mode: str = "L") -> bytes:
    """A small PNG of random texture, different for each seed."""
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, 3)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def image_import(dataset: Dataset, *, height: int = 48, width: int = 64, seed: int = 0) -> Image:
    """Import one PNG into ``dataset`` through the real service; returns its Image."""
    source = services.BytesSource(name=f"image-{seed}.png", data=png_bytes(height, width, seed))
    return services.images_import(dataset=dataset, sources=[source]).created[0]


# --- one object of every model the admin shows ------------------------------------------------
# Research data hangs off a ``dataset`` (a field or a parameter), so a test can make every object
# belong to one researcher: ``FACTORIES[model](dataset=theirs)``.


class ImageFactory(factory.django.DjangoModelFactory):
    """An image imported the real way (display rendition, model input, one task per class)."""

    class Meta:
        model = Image

    dataset = factory.SubFactory(DatasetFactory)
    seed = factory.Sequence(lambda n: n)

    @classmethod
    def _create(cls, model_class, dataset, seed, **kwargs):
        return image_import(dataset, seed=seed)


class TaskFactory(factory.django.DjangoModelFactory):
    """The task the import made for the dataset's first label class."""

    class Meta:
        model = "annotations.Task"
        django_get_or_create = ("image", "label_class")

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    image = factory.SubFactory(ImageFactory, dataset=factory.SelfAttribute("..dataset"))
    label_class = factory.LazyAttribute(lambda o: o.dataset.label_classes.order_by("pk").first())


def _empty_rle(height: int = 48, width: int = 64) -> dict:
    from inference.engine import rle

    return rle.encode(np.zeros((height, width), bool))


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "annotations.Annotation"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    task = factory.SubFactory(TaskFactory, dataset=factory.SelfAttribute("..dataset"))
    annotator = factory.SubFactory(UserFactory)
    mask = factory.LazyFunction(_empty_rle)
    area = 0
    client_key = factory.Sequence(lambda n: f"client-key-{n:06d}")


class GoldStandardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "annotations.GoldStandard"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    task = factory.SubFactory(TaskFactory, dataset=factory.SelfAttribute("..dataset"))
    mask = factory.LazyFunction(_empty_rle)
    area = 0


class FusedLabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "annotations.FusedLabel"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    task = factory.SubFactory(TaskFactory, dataset=factory.SelfAttribute("..dataset"))
    mask = factory.LazyFunction(_empty_rle)
    area = 0
    probability = factory.LazyFunction(lambda: png_bytes(48, 64))
    confidence = 0.9
    votes = 2
    annotation_count = 2


class AnnotatorReliabilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "annotations.AnnotatorReliability"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    annotator = factory.SubFactory(UserFactory)
    label_class = factory.LazyAttribute(lambda o: o.dataset.label_classes.order_by("pk").first())
    sensitivity = precision = specificity = 0.9
    sensitivity_sd = precision_sd = specificity_sd = 0.05
    images = 4
    golds = 1
    weight = 0.8


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "gamification.Campaign"
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"campaign {n}")
    dataset = factory.SubFactory(DatasetFactory)
    owner = factory.SelfAttribute("dataset.owner")

    @factory.post_generation
    def label_classes(self, create, extracted, **kwargs):
        if create:
            self.label_classes.set(extracted if extracted is not None else self.dataset.label_classes.all())


class RoundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "gamification.Round"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    campaign = factory.SubFactory(CampaignFactory, dataset=factory.SelfAttribute("..dataset"))
    player = factory.SubFactory(UserFactory)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=15))


class RoundTaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "gamification.RoundTask"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    round = factory.SubFactory(RoundFactory, dataset=factory.SelfAttribute("..dataset"))
    task = factory.SubFactory(TaskFactory, dataset=factory.SelfAttribute("..dataset"))
    position = 0


class SubmissionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "gamification.Submission"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    round_task = factory.SubFactory(RoundTaskFactory, dataset=factory.SelfAttribute("..dataset"))
    player = factory.SelfAttribute("round_task.round.player")
    annotation = factory.SubFactory(
        AnnotationFactory, task=factory.SelfAttribute("..round_task.task"), annotator=factory.SelfAttribute("..player")
    )
    idempotency_key = factory.Sequence(lambda n: f"idempotency-{n:06d}")
    request_sha256 = "0" * 64
    response_status = 201
    response_body = factory.LazyFunction(dict)
    mask_sha256 = "0" * 64


class PlayerStatsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "gamification.PlayerStats"

    player = factory.SubFactory(UserFactory)


class PlayerFlagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "gamification.PlayerFlag"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    submission = factory.SubFactory(SubmissionFactory, dataset=factory.SelfAttribute("..dataset"))
    player = factory.SelfAttribute("submission.player")
    campaign = factory.SelfAttribute("submission.round_task.round.campaign")
    reason = "too_fast"


class ImageEmbeddingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inference.ImageEmbedding"

    class Params:
        dataset = factory.SubFactory(DatasetFactory)

    image = factory.SubFactory(ImageFactory, dataset=factory.SelfAttribute("..dataset"))
    model_version = "test-model"


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "synthesis.Job"

    dataset = factory.SubFactory(DatasetFactory)
    kind = "validation"
    created_by = factory.SelfAttribute("dataset.owner")


class SyntheticSampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "synthesis.SyntheticSample"

    job = factory.SubFactory(JobFactory)
    dataset = factory.SelfAttribute("job.dataset")
    generator_version = "0123456789ab"
    seed = 0
    index = factory.Sequence(lambda n: n)
    size = 32
    image = factory.LazyFunction(lambda: png_bytes(32, 32))
    masks = factory.LazyFunction(dict)
    source_tasks = factory.LazyFunction(list)


class ExportJobFactory(factory.django.DjangoModelFactory):
    """A queued export of the dataset's first class, asked for by its owner."""

    class Meta:
        model = "annotations.ExportJob"

    dataset = factory.SubFactory(DatasetFactory)
    requested_by = factory.SelfAttribute("dataset.owner")
    formats = factory.LazyFunction(lambda: ["masks"])
    contents = factory.LazyFunction(lambda: ["images", "fused"])
    selection = factory.LazyAttribute(lambda o: {"label_classes": [o.dataset.label_classes.order_by("pk").first().pk]})


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "auth.Group"

    name = factory.Sequence(lambda n: f"group {n}")


class EmailAddressFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "account.EmailAddress"

    user = factory.SubFactory(UserFactory)
    email = factory.SelfAttribute("user.email")
    primary = True


FACTORIES = {
    factory_class._meta.get_model_class(): factory_class
    for factory_class in (
        UserFactory,
        DatasetFactory,
        ImageFactory,
        TaskFactory,
        AnnotationFactory,
        GoldStandardFactory,
        FusedLabelFactory,
        AnnotatorReliabilityFactory,
        CampaignFactory,
        SubmissionFactory,
        PlayerStatsFactory,
        PlayerFlagFactory,
        ImageEmbeddingFactory,
        JobFactory,
        SyntheticSampleFactory,
        ExportJobFactory,
        GroupFactory,
        EmailAddressFactory,
    )
}


def one_of_each(dataset) -> dict:
    """One object of every model the admin shows, research data in ``dataset``: {model: object}."""
    from django.contrib import admin

    objects = {}
    for model in admin.site._registry:
        assert model in FACTORIES, f"add a factory for {model._meta.label} to tests/factories.py"
        factory_class = FACTORIES[model]
        takes_dataset = "dataset" in factory_class._meta.declarations or "dataset" in factory_class._meta.parameters
        objects[model] = factory_class(dataset=dataset) if takes_dataset else factory_class()
    return objects
