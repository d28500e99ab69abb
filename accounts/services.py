"""Account actions: guests, upgrades, demo accounts."""

from __future__ import annotations

import secrets

from django.contrib.auth import password_validation
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils.crypto import salted_hmac

from crowdseg.errors import Conflict, DomainError, Forbidden

from .models import Role, User

_ADJECTIVES = ["brisk", "calm", "clever", "eager", "keen", "lucid", "nimble", "quiet", "steady", "swift"]
_NOUNS = ["heron", "otter", "lynx", "falcon", "badger", "marten", "ibis", "orca", "wren", "gecko"]


def pseudonym_generate() -> str:
    """A leaderboard name that says nothing about the person: ``swift-otter-4821``."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(10000):04d}"


def rater_id(user_id: int) -> str:
    """The opaque id that stands for a person in research data (exports, per-rater masks, reports
    that leave the system): ``r`` and 12 hex digits, stable for a user, never the username, pseudonym or
    database id, and not reversible without the server's SECRET_KEY. It outlives a person's personal
    data: a deleted pupil's labels keep theirs."""
    return "r" + salted_hmac("crowdseg.rater-id", str(user_id)).hexdigest()[:12]


def guest_create() -> User:
    """A volunteer who can play at once, with no username chosen and no password."""
    user = User(username=f"guest-{secrets.token_hex(8)}", role=Role.VOLUNTEER, is_guest=True)
    user.pseudonym = pseudonym_generate()
    user.set_unusable_password()
    user.save()
    return user


@transaction.atomic
def guest_upgrade(*, user: User, username: str, password: str, email: str = "") -> User:
    """Give a guest a username and password; their play history stays theirs (same row).

    Raises DomainError for a non-guest, a taken username or e-mail, or a weak password.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.is_guest:
        raise Forbidden("only guest accounts can be upgraded", code="not_a_guest")
    if User.objects.filter(username__iexact=username).exclude(pk=user.pk).exists():
        raise Conflict(f"username {username!r} is taken", code="username_taken", fields={"username": ["taken"]})
    if email and User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
        raise Conflict("this e-mail address is already in use", code="email_taken", fields={"email": ["taken"]})
    user.username = username
    user.email = email
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise DomainError(" ".join(exc.messages), code="weak_password", fields={"password": exc.messages}) from None
    user.set_password(password)
    user.is_guest = False
    user.save()
    return user


RESEARCHERS_GROUP = "researchers"
# What a researcher may do in the admin; every admin page also filters to their own datasets.
RESEARCHER_PERMISSIONS = {
    "annotations.dataset": ["view", "add", "change"],
    "annotations.labelclass": ["view", "add", "change", "delete"],
    "annotations.image": ["view"],
    "annotations.task": ["view"],
    "annotations.annotation": ["view"],
    "annotations.goldstandard": ["view", "add", "change"],
    "annotations.fusedlabel": ["view", "change"],
    "annotations.annotatorreliability": ["view"],
    "annotations.exportjob": ["view", "change"],
    "gamification.campaign": ["view", "add", "change"],
    "gamification.submission": ["view"],
    "gamification.playerflag": ["view"],
    "synthesis.job": ["view", "change"],
    "synthesis.syntheticsample": ["view"],
}


def researchers_group() -> Group:
    """The admin group of researchers, with its permissions (brought up to date on every call)."""
    group, _ = Group.objects.get_or_create(name=RESEARCHERS_GROUP)
    wanted = Q()
    for model, actions in RESEARCHER_PERMISSIONS.items():
        app_label, model_name = model.split(".")
        codenames = [f"{action}_{model_name}" for action in actions]
        wanted |= Q(content_type__app_label=app_label, codename__in=codenames)
    group.permissions.set(Permission.objects.filter(wanted))
    return group


@transaction.atomic
def user_role_set(*, user: User, role: str) -> User:
    """Give ``user`` a role and the admin access that goes with it (researchers and staff)."""
    if role not in Role.values:
        raise DomainError(f"unknown role {role!r}", code="invalid_role")
    user.role = role
    user.is_staff = role in (Role.RESEARCHER, Role.STAFF) or user.is_superuser
    user.save(update_fields=["role", "is_staff"])
    if role == Role.RESEARCHER:
        user.groups.add(researchers_group())
    else:
        user.groups.remove(*Group.objects.filter(name=RESEARCHERS_GROUP))
    return user


def user_ensure(
    *, username: str, password: str, role: str, email: str = "", superuser: bool = False
) -> tuple[User, bool]:
    """Create a user with this username, or leave an existing one as it is (demo loading).

    Returns (user, created).
    """
    user, created = User.objects.get_or_create(username=username, defaults={"email": email, "is_superuser": superuser})
    if created:
        user.pseudonym = pseudonym_generate()
        user.set_password(password)
        user.save()
        user_role_set(user=user, role=role)
    return user, created


# -- pupils ------------------------------------------------------------------------------------

# Things a child can read, recognise and type: a pupil's password is two of them and three digits.
# Each maps to the symbol its login card draws beside the word (``gamification.classroom_files``).
PICTURE_WORDS = {
    "anchor": "\u2693", "castle": "\u265c", "cloud": "\u2601", "comet": "\u2604", "crown": "\u265b",
    "cup": "\u2615", "dice": "\u2680", "feather": "\u2712", "flag": "\u2691", "flower": "\u273f",
    "gear": "\u2699", "heart": "\u2665", "horse": "\u265e", "house": "\u2302", "letter": "\u2709",
    "lightning": "\u26a1", "moon": "\u263e", "music": "\u266b", "pencil": "\u270e", "phone": "\u260e",
    "plane": "\u2708", "scissors": "\u2702", "smile": "\u263a", "snowflake": "\u2744", "snowman": "\u2603",
    "star": "\u2605", "sun": "\u2600", "umbrella": "\u2602",
}  # fmt: skip


def pupil_username_generate() -> str:
    """A login name that says nothing about the child and is easy to type: ``otter4821``.

    It is a credential, never shown to classmates (they see the pseudonym)."""
    while True:
        username = f"{secrets.choice(_NOUNS)}{secrets.randbelow(10000):04d}"
        if not User.objects.filter(username__iexact=username).exists():
            return username


def pupil_password_generate() -> str:
    """``moon-star-374``: two picture words and three digits (28 * 28 * 1000 = 784,000 passwords;
    allauth limits failed sign-ins per account)."""
    words = list(PICTURE_WORDS)
    return f"{secrets.choice(words)}-{secrets.choice(words)}-{secrets.randbelow(1000):03d}"


def pupil_create(*, password: str | None = None) -> User:
    """A pupil account: a generated username and pseudonym, no e-mail, no date of birth, no real
    name (the teacher's name for the pupil lives in their class, ``ClassMember.real_name``).

    With ``password=None`` the pupil has no password (joined by code, signed in by their session);
    the teacher can give them one with ``pupil_password_reset``."""
    user = User(username=pupil_username_generate(), role=Role.PUPIL, email="")
    user.pseudonym = pseudonym_generate()
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    return user


def pupil_password_reset(*, pupil: User) -> str:
    """Give the pupil a new picture-word password and return it (it is stored only hashed, so the
    teacher prints or notes it now). Signs the pupil out everywhere."""
    if pupil.role != Role.PUPIL:
        raise Forbidden("only pupils' passwords are reset by their teacher", code="not_a_pupil")
    password = pupil_password_generate()
    pupil.set_password(password)
    pupil.save(update_fields=["password"])
    return password


@transaction.atomic
def user_anonymise(*, user: User) -> User:
    """Erase what identifies ``user`` from their account row and close it.

    The row stays so that research labels keep their annotator, known from then on only by
    ``rater_id(user.pk)`` (the username becomes ``erased-<rater id>``). Signs them out: an inactive
    user's sessions no longer authenticate."""
    user.username = f"erased-{rater_id(user.pk)}"
    user.first_name = user.last_name = user.email = user.pseudonym = ""
    user.is_active = False
    user.set_unusable_password()
    user.save()
    user.emailaddress_set.all().delete()
    return user
