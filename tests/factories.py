"""Factories for tests: people with roles, datasets, and images imported the real way."""

from __future__ import annotations

import io

import factory
import numpy as np
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
