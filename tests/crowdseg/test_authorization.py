"""The authorisation matrix: every API route, admin page and WebSocket message, as every kind of
user, against objects that belong to someone else (Alice, a researcher, and Peggy, a player).

The routes come from the URL resolver and the consumer's message table, so a new route or message
without an entry in the tables below fails ``test_every_route_has_an_expected_outcome``. For each
call the outcome is one of: ``ok`` (2xx, or 200 for an admin page), ``denied`` (401, 403, 404, or a
redirect to the login or the admin index), or ``reached`` (any other 4xx or a 503: the caller got
past authorisation and the request failed for another reason). A persona in an entry's set must not
be ``denied``; every other persona must be ``denied``. No call may answer 500, and no ``ok`` answer
to someone who does not research Alice's dataset may contain any of her secrets (names, the invite
code), which is how a list or a changelist would leak her data. Each call runs in a transaction that
is rolled back, so calls do not see each other's effects.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from inference.engine import rle
from tests.conftest import cache_clear
from tests.inference.conftest import medsam_model_dir  # noqa: F401  (a fixture used here)

pytestmark = pytest.mark.django_db

PERSONAS = (
    "anonymous",
    "guest",
    "pupil",
    "volunteer",
    "teacher",
    "other_researcher",
    "collaborator",
    "owner",
    "staff",
)
NONE: frozenset[str] = frozenset()
EVERYONE = frozenset(PERSONAS)
SIGNED_IN = EVERYONE - {"anonymous"}
RESEARCHERS = frozenset({"other_researcher", "collaborator", "owner"})
HERS = frozenset({"collaborator", "owner"})  # who researches Alice's dataset
ADMIN_USERS = RESEARCHERS | {"staff"}
ANY = None  # no expectation: pages that are the same for everyone (login, translations)
TEACHER = frozenset({"teacher"})  # Tom, whose class holds the pupil persona (Pia) and her classmate

# -- the API: (URL name, method) -> who may --------------------------------------------------
API = {
    ("schema", "GET"): EVERYONE,
    ("docs", "GET"): EVERYONE,
    ("health", "GET"): frozenset({"staff"}),
    ("guest-create", "POST"): EVERYONE,
    ("guest-upgrade", "POST"): frozenset({"guest"}),
    ("me", "GET"): SIGNED_IN,
    ("dataset-list", "GET"): RESEARCHERS,  # each sees their own: the leak check holds the rest
    ("dataset-list", "POST"): RESEARCHERS,
    ("dataset-detail", "GET"): HERS,
    ("labelclass-create", "POST"): HERS,
    ("dataset-images", "GET"): HERS,
    ("dataset-images", "POST"): HERS,
    ("task-gold", "GET"): HERS,
    ("task-gold", "PUT"): HERS,
    ("task-suggest", "POST"): HERS,  # and players whose round holds the task (Peggy)
    ("task-initial-mask", "GET"): HERS,
    ("task-embedding", "GET"): HERS,
    ("model-current", "GET"): SIGNED_IN,
    ("model-decoder", "GET"): SIGNED_IN,
    ("campaign-list", "GET"): SIGNED_IN,
    ("campaign-list", "POST"): HERS,  # a campaign on Alice's dataset
    ("campaign-detail", "GET"): HERS,  # invite-only: not found by its id alone
    ("campaign-join", "POST"): NONE,  # with a wrong code
    ("campaign-rounds", "POST"): NONE,  # nobody here joined
    ("campaign-leaderboard", "GET"): HERS,  # an invite-only campaign's players: members and researchers
    ("leaderboard", "GET"): SIGNED_IN,
    ("round-detail", "GET"): NONE,  # Peggy's round
    ("round-submit", "POST"): NONE,
    ("submission-batch", "POST"): NONE,  # an item for Peggy's round: judged by the item's status
    ("my-game", "GET"): SIGNED_IN,
    ("dataset-jobs", "POST"): HERS,
    ("job-detail", "GET"): HERS,
    ("job-cancel", "POST"): HERS,
    ("job-resume", "POST"): HERS,
    ("dataset-exports", "POST"): HERS,
    ("export-detail", "GET"): HERS,
    ("export-cancel", "POST"): HERS,
    ("export-download", "GET"): frozenset({"owner"}),  # Alice asked for it: her link alone
    # classrooms: Tom's class; another teacher's class is not found
    ("class-list", "GET"): TEACHER,
    ("class-list", "POST"): TEACHER,
    ("class-join", "POST"): frozenset({"anonymous", "pupil"}),  # with the right code: pupil accounts only
    ("class-detail", "GET"): TEACHER,
    ("class-detail", "PATCH"): TEACHER,
    ("class-detail", "DELETE"): TEACHER,
    ("class-join-code", "POST"): TEACHER,
    ("class-pupils", "GET"): TEACHER,
    ("class-pupils", "POST"): TEACHER,
    ("class-pupil", "PATCH"): TEACHER,
    ("class-pupil", "DELETE"): TEACHER,
    ("class-pupil-password", "POST"): TEACHER,
    ("class-pupil-move", "POST"): TEACHER,
    ("class-login-cards", "POST"): TEACHER,
    ("class-assignments", "GET"): TEACHER,
    ("class-assignments", "POST"): TEACHER,
    ("class-assignment", "GET"): TEACHER,
    ("class-assignment", "DELETE"): TEACHER,
    ("class-assignment-export", "GET"): TEACHER,
    ("my-classes", "GET"): SIGNED_IN,  # one's own classes (none but the pupil's)
    ("my-data", "GET"): SIGNED_IN,
    # live sessions: Tom's session for his class, which Pia joined; round 1 is running
    ("live-session-list", "POST"): TEACHER,
    ("live-session-join", "POST"): frozenset({"pupil"}),  # the session's code: only its class gets in
    ("live-session-detail", "GET"): TEACHER | {"pupil"},
    ("live-session-control", "POST"): TEACHER,
    ("live-session-submit", "POST"): frozenset({"pupil"}),
    ("live-session-overlay", "GET"): TEACHER,
    ("live-session-report", "GET"): TEACHER,
}

# -- everything else outside the admin and allauth's own routes: URL name -> who may ---------------
PAGES = {
    "liveness": EVERYONE,
    "play": EVERYONE,  # the web client's shell: no data until the app signs in
    "play-service-worker": EVERYONE,
    "media": HERS,  # the display image of Alice's task (and players whose round holds it)
    "live-projector": TEACHER,  # signed out: 401 with a sign-in form
    "class-join-page": EVERYONE,  # a form, the same for any code
}

# -- the admin: per model, who may open each standard page of Alice's object -----------------
#: changelist, add, change, history, delete (researchers' permissions: accounts.services)
VIEW_ONLY = {"changelist": RESEARCHERS, "add": NONE, "change": HERS, "history": HERS, "delete": NONE}
VIEW_ADD = {**VIEW_ONLY, "add": RESEARCHERS}
SUPERUSER_ONLY = {"changelist": NONE, "add": NONE, "change": NONE, "history": NONE, "delete": NONE}
ADMIN_MODELS = {
    "annotations.dataset": VIEW_ADD,
    "annotations.image": VIEW_ONLY,
    "annotations.task": VIEW_ONLY,
    "annotations.annotation": VIEW_ONLY,
    "annotations.goldstandard": VIEW_ADD,
    "annotations.fusedlabel": VIEW_ONLY,
    "annotations.annotatorreliability": VIEW_ONLY,
    "annotations.exportjob": VIEW_ONLY,
    "gamification.campaign": VIEW_ADD,
    "gamification.playerflag": VIEW_ONLY,
    "gamification.submission": VIEW_ONLY,
    "gamification.playerstats": SUPERUSER_ONLY,
    "inference.imageembedding": SUPERUSER_ONLY,
    "synthesis.job": VIEW_ONLY,
    "synthesis.syntheticsample": VIEW_ONLY,
    "accounts.user": SUPERUSER_ONLY,
    "auth.group": SUPERUSER_ONLY,
    "account.emailaddress": SUPERUSER_ONLY,
}
ADMIN_PAGES = {
    "index": ADMIN_USERS,
    "app_list": RESEARCHERS,  # /admin/annotations/
    "login": ANY,
    "logout": ANY,
    "password_change": ANY,
    "password_change_done": ANY,
    "jsi18n": ANY,
    "autocomplete": NONE,  # no field named: refused for everyone
    "view_on_site": NONE,  # no model has a public page
    "auth_user_password_change": NONE,
    "annotations_dataset_import": HERS,
    "annotations_dataset_export": HERS,
    "annotations_exportjob_download": frozenset({"owner"}),  # only who asked for the export
    "annotations_fusedlabel_figure": HERS,
    "annotations_fusedlabel_annotation": HERS,
    "annotations_fusedlabel_use": HERS,
    "annotations_annotatorreliability_plot": HERS,
    "synthesis_job_curve": HERS,
}

# -- the game's WebSocket: message type -> who gets an answer about Alice's task -----------------
WS_MESSAGES = {
    "suggest": HERS,
    "live.join": frozenset({"pupil"}),
    "live.watch": TEACHER | {"pupil"},
    "live.control": TEACHER,
    "live.submit": frozenset({"pupil"}),
}


@dataclass
class World:
    users: dict
    ids: dict  # URL keyword -> value
    secrets: list[str]
    objects: dict  # "app.model" -> Alice's object of that model, for the admin's pages
    bodies: dict = field(default_factory=dict)
    class_secrets: list[str] = field(default_factory=list)  # what only Tom, the teacher, may see


@pytest.fixture
def world(settings, medsam_model_dir):  # noqa: F811
    from accounts import services as accounts_services
    from annotations import consensus
    from annotations import services as annotation_services
    from annotations.models import FusedLabel
    from gamification import services as game_services
    from gamification.models import Campaign, Submission
    from inference import services as inference_services
    from tests.factories import DatasetFactory, UserFactory, image_import, one_of_each

    settings.CROWDSEG_MODEL_DIR = medsam_model_dir

    def researcher(username):
        return accounts_services.user_role_set(user=UserFactory(username=username), role="researcher")

    alice = researcher("alice")
    users = {
        "anonymous": None,
        "guest": accounts_services.guest_create(),
        "pupil": UserFactory(username="pia", role="pupil", email=""),
        "volunteer": UserFactory(username="vera", role="volunteer"),
        "teacher": UserFactory(username="tom", role="teacher"),
        "other_researcher": researcher("charlie"),
        "collaborator": researcher("dave"),
        "owner": alice,
        "staff": accounts_services.user_role_set(user=UserFactory(username="sam"), role="staff"),
    }
    dataset = DatasetFactory(owner=alice, name="zz-alice-dataset", label_classes=["zz-played-class"])
    dataset.description = "zz-secret-description"
    dataset.save()
    dataset.collaborators.add(users["collaborator"])
    # A dataset no campaign shows: its name and classes are Alice's alone (the dataset above is
    # named by its public campaign to every player).
    private = DatasetFactory(owner=alice, name="zz-alice-private-dataset", label_classes=["zz-private-class"])
    private.collaborators.add(users["collaborator"])
    image_import(private, seed=109)
    label_class = dataset.label_classes.get()
    images = [image_import(dataset, height=48, width=64, seed=seed) for seed in range(100, 104)]
    task = images[0].tasks.get()
    gold = np.zeros((48, 64), bool)
    gold[10:30, 10:40] = True
    annotation_services.gold_standard_set(task=task, mask=gold, created_by=alice)
    public = game_services.campaign_create(
        owner=alice, dataset=dataset, name="zz-alice-public", label_classes=[label_class], round_size=4
    )
    invite = game_services.campaign_create(
        owner=alice,
        dataset=dataset,
        name="zz-alice-invite-only",
        label_classes=[label_class],
        visibility=Campaign.Visibility.INVITE,
    )
    # Peggy plays Alice's public campaign: her round, her submission, the fused label it makes.
    peggy = UserFactory(username="peggy", role="volunteer")
    game_services.campaign_join(player=peggy, campaign=public)
    game_round = game_services.round_start(player=peggy, campaign=public, seed=1)
    round_task = game_round.round_tasks.order_by("position").first()
    if not hasattr(round_task.task, "gold"):  # the task under test has a gold standard to read
        annotation_services.gold_standard_set(task=round_task.task, mask=gold, created_by=alice)
    game_services.submission_submit(
        player=peggy,
        round_id=game_round.pk,
        task_id=round_task.task_id,
        data={"rle": rle.encode(gold), "time_spent_ms": 9000, "suggestion_use": "none"},
        idempotency_key="peggy-key-0001",
    )
    submission = Submission.objects.get(player=peggy)
    consensus.fusion_run(label_class=label_class)
    # One object of each model in Alice's dataset; the fused label and the annotation are Peggy's,
    # on one task, as the admin's review pages need them.
    objects = {model._meta.label_lower: obj for model, obj in one_of_each(dataset).items()}
    objects["annotations.fusedlabel"] = FusedLabel.objects.get(task=round_task.task)
    objects["annotations.annotation"] = submission.annotation
    objects["gamification.submission"] = submission
    objects["gamification.campaign"] = invite
    objects["annotations.dataset"] = dataset
    objects["accounts.user"] = alice
    job = objects["synthesis.job"]
    # Alice's finished export of the played class, with its file: the download must work for her.
    export = annotation_services.export_start(
        dataset=dataset, requested_by=alice, formats=["masks"], label_class_ids=[label_class.pk], enqueue=False
    )
    export = annotation_services.export_run(job_id=export.pk)
    assert export.status == "done", export.error
    objects["annotations.exportjob"] = export
    manifest = inference_services.model_manifest()
    ids = {
        "dataset_id": dataset.pk,
        "task_id": round_task.task_id,
        "campaign_id": invite.pk,
        "round_id": game_round.pk,
        "job_id": job.pk,
        "export_id": export.pk,
        "sha256": manifest.decoder.sha256,
        "label_class_pk": label_class.pk,
        "kind": "mask",
        "annotation_pk": submission.annotation_id,
        "app_label": "annotations",
        "id": alice.pk,
        "content_type_id": 1,
        "display_url": round_task.task.image.display.url,
        "object_id": 1,
    }
    secrets = [private.name, "zz-private-class", dataset.description, invite.name, invite.invite_code]
    # Tom's class: Pia (the pupil persona) and her classmate, whom only Tom may see.
    from gamification import classroom_services

    classroom = classroom_services.classroom_create(teacher=users["teacher"], name="Year 9 Biology")
    other_class = classroom_services.classroom_create(teacher=users["teacher"], name="Year 10 Biology")
    classroom_services.classroom_join(classroom=classroom, pupil=users["pupil"])
    ((classmate, _),) = classroom_services.roster_add(classroom=classroom, names=["zz-classmate-real-name"])
    assignment = classroom_services.assignment_create(
        classroom=classroom, campaign=public, target_tasks=5, due_at=timezone.now() + timedelta(days=7)
    )
    ids |= {
        "classroom_id": classroom.pk,
        "pupil_id": classmate.pupil_id,
        "assignment_id": assignment.pk,
        "file_format": "csv",
    }
    # Tom's live session: Pia and her classmate joined, round 1 runs.
    from gamification import live_sessions

    session = live_sessions.live_session_open(teacher=users["teacher"], classroom=classroom, campaign=public)
    live_sessions.live_session_join(pupil=users["pupil"], code=session.code)
    live_sessions.live_session_join(pupil=classmate.pupil, code=session.code)
    live_sessions.live_session_control(session=session, action="start")
    ids |= {"session_id": session.pk, "number": 1}
    class_secrets = ["zz-classmate-real-name", classmate.pupil.username, classmate.pupil.pseudonym, classroom.join_code]
    submit = {"rle": rle.encode(gold), "time_spent_ms": 9000, "suggestion_use": "none"}
    bodies = {
        ("guest-create", "POST"): {"client": "app"},
        ("guest-upgrade", "POST"): {"username": "newname", "password": "a-long-enough-pass-42"},
        ("dataset-list", "POST"): {"name": "a new dataset"},
        ("labelclass-create", "POST"): {"name": "liver"},
        ("task-gold", "PUT"): {"rle": rle.encode(gold)},
        ("task-suggest", "POST"): {"box": [5, 5, 40, 30]},
        ("campaign-list", "POST"): {"name": "mine now", "dataset": dataset.pk, "label_classes": [label_class.pk]},
        ("campaign-join", "POST"): {"invite_code": "WRONGCODE"},
        ("round-submit", "POST"): submit,
        ("submission-batch", "POST"): {
            "submissions": [
                {**submit, "round": str(game_round.pk), "task": str(round_task.task_id), "idempotency_key": "k" * 16}
            ]
        },
        ("dataset-jobs", "POST"): {"kind": "validation"},
        ("dataset-exports", "POST"): {"formats": ["coco"], "label_classes": [label_class.pk]},
        ("class-list", "POST"): {"name": "a new class"},
        ("live-session-list", "POST"): {"classroom": classroom.pk, "campaign": public.pk},
        ("live-session-join", "POST"): {"code": session.code},
        ("live-session-control", "POST"): {"action": "pause"},
        ("live-session-submit", "POST"): submit,
        # the game's WebSocket messages, beyond the suggestion's task and box
        ("ws", "live.join"): {"code": session.code},
        ("ws", "live.watch"): {"session": str(session.pk)},
        ("ws", "live.control"): {"session": str(session.pk), "action": "pause"},
        ("ws", "live.submit"): {**submit, "session": str(session.pk), "round": 1, "idempotency_key": "ws-key-0001"},
        ("class-join", "POST"): {"code": classroom.join_code},
        ("class-detail", "PATCH"): {"name": "renamed"},
        ("class-pupils", "POST"): {"names": ["a new pupil"]},
        ("class-pupil", "PATCH"): {"real_name": "renamed"},
        ("class-pupil-move", "POST"): {"to": other_class.pk},
        ("class-login-cards", "POST"): {},
        ("class-assignments", "POST"): {
            "campaign": public.pk,  # assigned already: Tom gets past authorisation to a 409
            "target_tasks": 3,
            "due_at": (timezone.now() + timedelta(days=3)).isoformat(),
        },
    }
    return World(users=users, ids=ids, secrets=secrets, objects=objects, bodies=bodies, class_secrets=class_secrets)


# -- walking the resolver ----------------------------------------------------------------------


def _patterns(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def api_routes() -> dict[tuple[str, str], URLPattern]:
    routes = {}
    for route, pattern in _patterns(get_resolver().url_patterns):
        if not route.startswith("api/v1/") or pattern.name is None:
            continue
        view = getattr(pattern.callback, "view_class", None) or pattern.callback.cls
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view, method):
                routes[(pattern.name, method.upper())] = pattern
    return routes


def page_routes() -> dict[str, URLPattern]:
    return {
        pattern.name: pattern
        for route, pattern in _patterns(get_resolver().url_patterns)
        if not route.startswith(("admin/", "_allauth/", "api/v1/"))
    }


def admin_routes() -> dict[str, URLPattern]:
    return {pattern.name: pattern for _, pattern in _patterns(admin.site.get_urls()) if pattern.name}


def _standard_admin_page(name: str) -> tuple[str, str] | None:
    """("app.model", page) for a ModelAdmin's own pages, else None."""
    for model in admin.site._registry:
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if name.startswith(prefix) and name[len(prefix) :] in SUPERUSER_ONLY:
            return model._meta.label_lower, name[len(prefix) :]
    return None


def admin_expected(name: str):
    standard = _standard_admin_page(name)
    if standard is not None:
        return ADMIN_MODELS[standard[0]][standard[1]]
    return ADMIN_PAGES[name]


def test_every_route_has_an_expected_outcome():
    assert set(api_routes()) == set(API), "a route without an entry in API (or an entry without a route)"
    assert set(page_routes()) == set(PAGES), "a route without an entry in PAGES"
    names = admin_routes()
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(ADMIN_MODELS), "a model admin without an entry in ADMIN_MODELS"
    custom = {name for name in names if _standard_admin_page(name) is None}
    assert custom == set(ADMIN_PAGES), "an admin page without an entry in ADMIN_PAGES"
    from gamification.consumers import PlayConsumer

    assert set(PlayConsumer.MESSAGES) == set(WS_MESSAGES), "a WebSocket message without an entry"


# -- calling ---------------------------------------------------------------------------------


class _Rollback(Exception):
    pass


def _isolated(call):
    """``call()``'s result, with everything it wrote to the database rolled back."""
    outcome = []
    try:
        with transaction.atomic():
            cache_clear()  # rate limits start from zero
            outcome.append(call())
            raise _Rollback
    except _Rollback:
        pass
    return outcome[0]


def api_outcome(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if status in (401, 403, 404):
        return "denied"
    return "reached"


def _url(pattern: URLPattern, ids: dict, prefix: str) -> str:
    keys = pattern.pattern.converters.keys() if hasattr(pattern.pattern, "converters") else ()
    kwargs = {key: ids[key] for key in keys}
    return reverse(f"{prefix}{pattern.name}", kwargs=kwargs)


def _api_call(world: World, persona: str, name: str, method: str, url: str):
    client = APIClient()
    if world.users[persona] is not None:
        client.force_authenticate(world.users[persona])
    body = world.bodies.get((name, method))
    if (name, method) == ("dataset-images", "POST"):
        from tests.factories import png_bytes

        upload = SimpleUploadedFile("new.png", png_bytes(), content_type="image/png")
        return client.post(url, {"files": [upload]}, format="multipart")
    submits = ("round-submit", "live-session-submit")
    headers = {"HTTP_IDEMPOTENCY_KEY": f"key-{uuid.uuid4().hex[:16]}"} if name in submits else {}
    return getattr(client, method.lower())(url, body, format="json", **headers)


def _leaks(world: World, persona: str, response) -> list[str]:
    secrets = ([] if persona in HERS else world.secrets) + ([] if persona in TEACHER else world.class_secrets)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    text = content.decode("utf-8", "replace")
    return [secret for secret in secrets if secret in text]


def test_the_api_matrix(world):
    failures = []
    for (name, method), pattern in sorted(api_routes().items()):
        url = _url(pattern, world.ids, "")
        for persona in PERSONAS:
            response = _isolated(lambda: _api_call(world, persona, name, method, url))  # noqa: B023
            status = response.status_code
            if name == "submission-batch" and status == 200:
                status = response.json()["results"][0]["status"]  # each item is judged on its own
            outcome = api_outcome(status)
            allowed = persona in API[(name, method)]
            if status >= 500 and status != 503:  # 503: a part of the stack is down, said as such
                failures.append(f"{method} {url} as {persona}: {status}")
            elif allowed and outcome == "denied":
                failures.append(f"{method} {url} as {persona}: {status}, expected to get through")
            elif not allowed and outcome != "denied":
                failures.append(f"{method} {url} as {persona}: {status}, expected 401/403/404")
            leaked = _leaks(world, persona, response) if outcome == "ok" else []
            if leaked and name not in ("schema", "docs"):
                failures.append(f"{method} {url} as {persona}: leaks {leaked}")
    assert not failures, "\n".join(failures)


def test_the_pages_matrix(world):
    urls = {
        "liveness": reverse("liveness"),
        "media": world.ids["display_url"],
        "live-projector": reverse("live-projector", args=[world.ids["session_id"]]),
        "class-join-page": reverse("class-join-page", args=["K7MQ3X"]),
    }
    failures = []
    for name, url in urls.items():
        for persona in PERSONAS:
            client = APIClient()
            if world.users[persona] is not None:
                client.force_login(world.users[persona])
            response = _isolated(lambda: client.get(url))  # noqa: B023
            outcome = api_outcome(response.status_code)
            allowed = persona in PAGES[name]
            if allowed and outcome != "ok":
                failures.append(f"GET {url} as {persona}: {response.status_code}, expected 200")
            elif not allowed and outcome != "denied":
                failures.append(f"GET {url} as {persona}: {response.status_code}, expected 401/403/404")
    assert not failures, "\n".join(failures)


def admin_outcome(response) -> str:
    if response.status_code == 200:
        return "ok"
    if response.status_code in (403, 404, 405):
        return "denied"
    if response.status_code == 302:
        return "denied"  # to the login page, or to the index with "does not exist"
    return "reached"


def _admin_url(world: World, pattern: URLPattern) -> str:
    standard = _standard_admin_page(pattern.name)
    ids = dict(world.ids)
    if standard is not None:
        obj = world.objects[standard[0]]
        ids["object_id"] = obj.pk
    elif pattern.name.startswith("annotations_fusedlabel_"):
        ids["pk"] = world.objects["annotations.fusedlabel"].pk
    elif pattern.name in ("annotations_dataset_import", "annotations_dataset_export"):
        ids["pk"] = world.ids["dataset_id"]
    elif pattern.name == "annotations_exportjob_download":
        ids["pk"] = world.ids["export_id"]
    elif pattern.name == "synthesis_job_curve":
        ids["pk"] = world.ids["job_id"]
    elif pattern.name == "annotations_annotatorreliability_plot":
        ids["kind"] = "histogram"
    keys = pattern.pattern.converters.keys() if hasattr(pattern.pattern, "converters") else ()
    regex_keys = pattern.pattern.regex.groupindex.keys()
    return reverse(f"admin:{pattern.name}", kwargs={key: ids[key] for key in {*keys, *regex_keys}})


def test_the_admin_matrix(world):
    failures = []
    for name, pattern in sorted(admin_routes().items()):
        expected = admin_expected(name)
        if expected is ANY:
            continue
        url = _admin_url(world, pattern)
        for persona in PERSONAS:
            client = Client(raise_request_exception=False)  # a 500 is a finding, listed with the rest
            if world.users[persona] is not None:
                client.force_login(world.users[persona])
            response = _isolated(lambda: client.get(url))  # noqa: B023
            outcome = admin_outcome(response)
            allowed = persona in expected
            if response.status_code >= 500:
                failures.append(f"GET {url} as {persona}: {response.status_code}")
            elif allowed and outcome != "ok":
                failures.append(f"GET {url} as {persona}: {response.status_code}, expected 200")
            elif not allowed and outcome != "denied":
                failures.append(f"GET {url} as {persona}: {response.status_code}, expected to be refused")
            leaked = _leaks(world, persona, response) if outcome == "ok" else []
            if leaked:
                failures.append(f"GET {url} as {persona}: leaks {leaked}")
    assert not failures, "\n".join(failures)


@pytest.mark.django_db(transaction=True)
def test_the_websocket_matrix(world):
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from crowdseg.routing import websocket_urlpatterns

    application = URLRouter(websocket_urlpatterns)

    async def exchange(user, message: dict):
        from django.contrib.auth.models import AnonymousUser

        communicator = WebsocketCommunicator(application, "/ws/v1/play")
        communicator.scope["user"] = user or AnonymousUser()
        connected, _ = await communicator.connect()
        if not connected:
            await communicator.disconnect()  # see tests/crowdseg/test_ws_subprotocol.py
            return None
        await communicator.send_json_to(message)
        answer = await communicator.receive_json_from(timeout=30)
        while answer.get("id") != message["id"]:  # an event (a live round expiring), not the answer
            answer = await communicator.receive_json_from(timeout=30)
        await communicator.disconnect()
        return answer

    failures = []
    for message_type, allowed_personas in WS_MESSAGES.items():
        message = {"type": message_type, "id": "m1", "task": str(world.ids["task_id"]), "box": [5, 5, 40, 30]}
        message |= world.bodies.get(("ws", message_type), {})
        for persona in PERSONAS:
            cache_clear()
            answer = asyncio.run(exchange(world.users[persona], message))
            if answer is None:
                outcome = "denied"  # the handshake was refused
            elif answer["type"] == "error":
                outcome = api_outcome(answer["error"]["status"])
            else:
                outcome = "ok"
            allowed = persona in allowed_personas
            if allowed and outcome == "denied":
                failures.append(f"{message_type} as {persona}: {answer}, expected to get through")
            elif not allowed and outcome != "denied":
                failures.append(f"{message_type} as {persona}: {answer}, expected to be refused")
    assert not failures, "\n".join(failures)
