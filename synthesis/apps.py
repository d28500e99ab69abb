from django.apps import AppConfig


class SynthesisConfig(AppConfig):
    """pix2pix synthesis and downstream validation (the synthesis issue)."""

    name = "synthesis"
