"""What inference does when other apps announce events."""

from django.dispatch import receiver

from annotations.models import Image
from annotations.signals import images_imported

from . import services


@receiver(images_imported, sender=Image)
def embed_imported_images(sender, images, **kwargs):
    services.images_embed_on_import(images=images)
