"""People: one user model from day one, with the roles the product needs."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    VOLUNTEER = "volunteer", "Volunteer"
    PUPIL = "pupil", "Pupil"  # joins through a class code; has no e-mail address
    TEACHER = "teacher", "Teacher"
    RESEARCHER = "researcher", "Researcher"
    STAFF = "staff", "Staff"


class User(AbstractUser):
    """A person who plays, teaches, researches or runs the service.

    ``email`` is optional (pupils and guests have none). A guest is a volunteer created without
    credentials so play starts at once; ``account_upgrade_guest`` later gives them a username and
    password and keeps everything they did.
    """

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VOLUNTEER)
    is_guest = models.BooleanField(default=False)
    # Shown on leaderboards instead of the username, which may be a real name.
    pseudonym = models.CharField(max_length=40, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")

    class Meta:
        indexes = [models.Index(fields=["role"])]

    def __str__(self) -> str:
        """The username, except for pupils: their opaque rater id, so that no admin page, list or
        log line a researcher reads shows a child's login name."""
        if self.role == Role.PUPIL and self.pk is not None:
            from .services import rater_id  # services import this module

            return rater_id(self.pk)
        return self.username

    @property
    def is_researcher(self) -> bool:
        """May create datasets and campaigns; sees only the datasets they own or collaborate on."""
        return self.role == Role.RESEARCHER or self.is_superuser

    @property
    def is_operator(self) -> bool:
        """Runs the service (health checks, accounts); sees no research data by this role."""
        return self.role == Role.STAFF or self.is_superuser
