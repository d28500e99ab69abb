"""allauth hooks: what a signed-up or logged-in user looks like to clients."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.headless.adapter import DefaultHeadlessAdapter


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


class HeadlessAdapter(DefaultHeadlessAdapter):
    def serialize_user(self, user) -> dict:
        data = super().serialize_user(user)
        data.update({"role": user.role, "is_guest": user.is_guest, "pseudonym": user.pseudonym})
        return data
