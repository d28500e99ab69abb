from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """MedSAM export, embeddings and suggestions (the suggestions issue). ``engine/`` has no Django."""

    name = "inference"
