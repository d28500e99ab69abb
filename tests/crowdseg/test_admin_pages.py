"""Every admin page opens without a server error, for a superuser and for a researcher.

The pages come from ``admin.site._registry``: a new model admin is covered as soon as it is
registered (and fails here until ``tests.factories.FACTORIES`` can make one of its objects).
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from accounts.services import user_role_set
from tests.factories import DatasetFactory, UserFactory, one_of_each

pytestmark = pytest.mark.django_db


def admin_pages(objects: dict) -> list[str]:
    pages = []
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        obj = objects[model]
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        if model_admin.search_fields:
            pages.append(reverse("admin:{}_{}_changelist".format(*info)) + "?q=a")
        pages.append(reverse("admin:{}_{}_add".format(*info)))
        for view in ("change", "history", "delete"):
            pages.append(reverse(f"admin:{info[0]}_{info[1]}_{view}", args=[obj.pk]))
    return pages


@pytest.mark.parametrize("who", ["superuser", "owner", "other_researcher"])
def test_every_admin_page_opens_without_a_server_error(who):
    owner = user_role_set(user=UserFactory(username="alice"), role="researcher")
    objects = one_of_each(DatasetFactory(owner=owner, label_classes=["liver"]))
    users = {
        "superuser": lambda: UserFactory(username="root", is_staff=True, is_superuser=True),
        "owner": lambda: owner,
        "other_researcher": lambda: user_role_set(user=UserFactory(username="charlie"), role="researcher"),
    }
    client = Client()
    client.force_login(users[who]())
    failures = []
    pages = admin_pages(objects)
    for url in pages:
        response = client.get(url)
        if response.status_code >= 500 or response.status_code not in (200, 302, 403, 404):
            failures.append(f"{response.status_code} {url}")
    assert not failures, failures
    assert len(pages) >= 5 * len(admin.site._registry)
