"""Events other apps listen to. Sent by services after the transaction commits."""

from django.dispatch import Signal

# images_imported.send(sender=Image, images=list[Image]): new images are stored and visible.
# ``inference`` connects here to queue the embedding of each image.
images_imported = Signal()
