"""allauth hooks: what a signed-up or logged-in user looks like to clients."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from allauth.headless.adapter import DefaultHeadlessAdapter
from django import forms

from .models import Role


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        # Self sign-up makes volunteers; researchers and teachers are promoted by staff.
        user = super().save_user(request, user, form, commit=False)
        user.role = "volunteer"
        if not user.pseudonym:
            from .services import pseudonym_generate

            user.pseudonym = pseudonym_generate()
        if commit:
            user.save()
        return user

    def clean_email(self, email: str) -> str:
        # Data minimisation for children: a pupil's account holds no e-mail address, so none can
        # be added to it (allauth's "add e-mail" and "change e-mail" both clean it here).
        user = getattr(context.request, "user", None)
        if user is not None and user.is_authenticated and user.role == Role.PUPIL:
            raise forms.ValidationError("pupil accounts have no e-mail address")
        return super().clean_email(email)


class HeadlessAdapter(DefaultHeadlessAdapter):
    def serialize_user(self, user) -> dict:
        data = super().serialize_user(user)
        data.update({"role": user.role, "is_guest": user.is_guest, "pseudonym": user.pseudonym})
        return data
