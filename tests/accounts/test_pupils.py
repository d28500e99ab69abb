"""Pupil accounts: generated names and passwords, no e-mail address ever, erasure keeps the rater id."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import authenticate
from django.test import Client

from accounts import services
from accounts.models import Role

pytestmark = pytest.mark.django_db


def test_a_pupil_account_has_generated_names_and_no_email():
    password = services.pupil_password_generate()
    pupil = services.pupil_create(password=password)
    assert pupil.role == Role.PUPIL and pupil.email == "" and not pupil.is_guest
    assert re.fullmatch(r"[a-z]+\d{4}", pupil.username)
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{4}", pupil.pseudonym)
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{3}", password)
    assert authenticate(username=pupil.username, password=password) == pupil


def test_a_pupil_cannot_add_an_email_address():
    pupil = services.pupil_create(password=services.pupil_password_generate())
    client = Client()
    client.force_login(pupil)
    response = client.post(
        "/_allauth/browser/v1/account/email", {"email": "kid@example.org"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert not EmailAddress.objects.filter(user=pupil).exists()
    pupil.refresh_from_db()
    assert pupil.email == ""


def test_a_volunteer_still_adds_an_email_address(volunteer):
    client = Client()
    client.force_login(volunteer)
    response = client.post(
        "/_allauth/browser/v1/account/email", {"email": "vera.new@example.org"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert EmailAddress.objects.filter(user=volunteer, email="vera.new@example.org").exists()


def test_anonymising_keeps_the_rater_id_and_closes_the_account():
    password = services.pupil_password_generate()
    pupil = services.pupil_create(password=password)
    before = services.rater_id(pupil.pk)
    services.user_anonymise(user=pupil)
    pupil.refresh_from_db()
    assert pupil.username == f"erased-{before}" and pupil.pseudonym == "" and not pupil.is_active
    assert str(pupil) == before  # how every admin page names a pupil
    assert authenticate(username=f"erased-{before}", password=password) is None


def test_only_pupils_passwords_are_reset_by_a_teacher(volunteer):
    from crowdseg.errors import Forbidden

    with pytest.raises(Forbidden):
        services.pupil_password_reset(pupil=volunteer)
