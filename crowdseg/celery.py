"""The Celery app. Tasks live in each app's ``tasks.py`` and are thin wrappers over services."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crowdseg.settings.local")

app = Celery("crowdseg")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.imports = ("crowdseg.tasks",)  # the project package is not an installed app
