from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """MedSAM export, embeddings and suggestions. ``engine/`` has no Django and no torch."""

    name = "inference"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the signal receivers)
