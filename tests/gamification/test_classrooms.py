"""Classes: join codes, rosters of pupils without e-mail, login cards, moving and erasing pupils.

Tom teaches Year 9 Biology; Tina is another teacher, who must find nothing of Tom's (404).
"""

from __future__ import annotations

import re
import zlib
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.services import rater_id
from annotations.models import Annotation
from gamification import classroom_services
from gamification.classroom_files import LoginCard, login_cards_pdf
from gamification.models import JOIN_CODE_ALPHABET, Assignment, ClassMember, Classroom, PlayerStats
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import play, roster

pytestmark = pytest.mark.django_db


@pytest.fixture
def tina(db):
    return UserFactory(username="tina", role=Role.TEACHER)


def pdf_text(pdf: bytes) -> str:
    """The text drawn in a PDF made by fpdf2 (its content streams, inflated)."""
    text = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            text.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            continue  # images
    return "".join(text)


# -- classes and join codes --------------------------------------------------------------------


def test_a_teacher_creates_a_class_with_a_code_a_child_can_type(tom):
    response = client_for(tom).post("/api/v1/classes", {"name": "Year 9 Biology"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert len(body["join_code"]) == 6 and set(body["join_code"]) <= set(JOIN_CODE_ALPHABET)
    assert not set("0O1IL5S2Z") & set(JOIN_CODE_ALPHABET)
    assert body["join_url"].endswith(f"/join/{body['join_code']}")
    classroom = Classroom.objects.get(pk=body["id"])
    assert classroom.teacher == tom and classroom.retention_days == 365
    assert classroom.join_code_expires_at > timezone.now() + timedelta(days=13)


@pytest.mark.parametrize("role", [Role.PUPIL, Role.VOLUNTEER, Role.RESEARCHER])
def test_only_teachers_create_classes(role):
    user = UserFactory(role=role)
    response = client_for(user).post("/api/v1/classes", {"name": "mine"}, format="json")
    assert response.status_code == 403
    assert not Classroom.objects.exists()


@pytest.mark.parametrize(
    "body", [{"name": ""}, {"name": "x" * 121}, {"name": "ok", "retention_days": 0}, {"name": 5}, {}]
)
def test_it_rejects_a_bad_class(tom, body):
    response = client_for(tom).post("/api/v1/classes", body, format="json")
    assert response.status_code == 400
    assert not Classroom.objects.exists()


def test_a_child_without_an_account_joins_with_the_code_typed_in_lower_case(biology):
    client = APIClient()
    code = f" {biology.join_code[:3].lower()}-{biology.join_code[3:].lower()} "
    response = client.post("/api/v1/classes/join", {"code": code}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["classroom"] == {"id": biology.pk, "name": "Year 9 Biology"}
    pupil = User.objects.get(pk=body["user"]["id"])
    assert pupil.role == Role.PUPIL and pupil.email == "" and pupil.pseudonym
    assert not pupil.has_usable_password()
    assert ClassMember.objects.filter(classroom=biology, pupil=pupil, real_name="").exists()
    # Signed in by the session the join started: the pupil sees their class.
    mine = client.get("/api/v1/me/classes").json()
    assert [c["name"] for c in mine["classes"]] == ["Year 9 Biology"]


def test_an_app_gets_a_session_token_when_joining(biology):
    response = APIClient().post("/api/v1/classes/join", {"code": biology.join_code, "client": "app"}, format="json")
    assert response.status_code == 201
    token = response.json()["session_token"]
    me = APIClient().get("/api/v1/accounts/me", HTTP_X_SESSION_TOKEN=token)
    assert me.status_code == 200 and me.json()["role"] == "pupil"


def test_a_signed_in_pupil_joins_a_second_class_as_themselves(biology, tom):
    ((member, _password),) = roster(biology, "Ada Lovelace")
    chemistry = classroom_services.classroom_create(teacher=tom, name="Year 9 Chemistry")
    response = client_for(member.pupil).post("/api/v1/classes/join", {"code": chemistry.join_code}, format="json")
    assert response.status_code == 200
    assert set(ClassMember.objects.filter(pupil=member.pupil).values_list("classroom__name", flat=True)) == {
        "Year 9 Biology",
        "Year 9 Chemistry",
    }


def test_wrong_expired_and_rotated_codes_get_the_same_answer(biology, tom):
    old = biology.join_code
    expired = classroom_services.classroom_create(teacher=tom, name="last year")
    expired.join_code_expires_at = timezone.now() - timedelta(minutes=1)
    expired.save()
    response = client_for(tom).post(f"/api/v1/classes/{biology.pk}/join-code")
    assert response.status_code == 200 and response.json()["join_code"] != old
    answers = []
    for code in ["QQQQQQ", expired.join_code, old, "not a code at all", ""]:
        response = APIClient().post("/api/v1/classes/join", {"code": code}, format="json")
        answers.append((response.status_code, response.json()["error"]["code"], response.json()["error"]["message"]))
    assert answers[0] == (404, "join_code_invalid", answers[0][2])
    assert all(answer == answers[0] for answer in answers[:4]), answers
    assert answers[4][0] == 400  # blank: a validation error
    assert not User.objects.filter(role=Role.PUPIL).exists()
    new_code = Classroom.objects.get(pk=biology.pk).join_code
    assert APIClient().post("/api/v1/classes/join", {"code": new_code}, format="json").status_code == 201


def test_wrong_codes_are_rate_limited_per_client(biology):
    client = APIClient()
    for _ in range(classroom_services.JOIN_FAILURES):
        assert client.post("/api/v1/classes/join", {"code": "QQQQQQ"}, format="json").status_code == 404
    response = client.post("/api/v1/classes/join", {"code": biology.join_code}, format="json")
    assert response.status_code == 429 and "Retry-After" in response
    assert not ClassMember.objects.exists()
    # Another school's address is not held back by this one's mistakes.
    other = APIClient(REMOTE_ADDR="10.9.8.7")
    assert other.post("/api/v1/classes/join", {"code": biology.join_code}, format="json").status_code == 201


def test_other_accounts_do_not_join_classes(biology, volunteer, tina):
    for user in (volunteer, tina):
        response = client_for(user).post("/api/v1/classes/join", {"code": biology.join_code}, format="json")
        assert response.status_code == 403
    assert not ClassMember.objects.exists()


def test_a_full_class_takes_no_more_pupils(biology, monkeypatch):
    monkeypatch.setattr(classroom_services, "MAX_PUPILS_PER_CLASS", 2)
    roster(biology, "A", "B")
    response = APIClient().post("/api/v1/classes/join", {"code": biology.join_code}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "class_full"
    assert biology.members.count() == 2
    assert User.objects.filter(role=Role.PUPIL).count() == 2  # the would-be account was rolled back


# -- rosters -----------------------------------------------------------------------------------


def test_a_roster_makes_pupils_without_email_whose_names_only_the_teacher_sees(tom, biology):
    response = client_for(tom).post(
        f"/api/v1/classes/{biology.pk}/pupils", {"names": ["Ada Lovelace", "Alan Turing"]}, format="json"
    )
    assert response.status_code == 201
    created = response.json()["pupils"]
    assert [p["real_name"] for p in created] == ["Ada Lovelace", "Alan Turing"]
    for row in created:
        pupil = User.objects.get(pk=row["id"])
        assert pupil.role == Role.PUPIL and pupil.email == "" and pupil.first_name == pupil.last_name == ""
        assert "ada" not in pupil.username.lower() and "ada" not in pupil.pseudonym.lower()
        assert re.fullmatch(r"[a-z]+-[a-z]+-\d{3}", row["password"])
        assert authenticate(username=pupil.username, password=row["password"]) == pupil
        # What the pupil (and anyone they meet in the game) sees of themselves: no real name.
        me = client_for(pupil).get("/api/v1/accounts/me").content.decode()
        assert "Lovelace" not in me and "Turing" not in me
    listed = client_for(tom).get(f"/api/v1/classes/{biology.pk}/pupils").json()["pupils"]
    assert {p["real_name"] for p in listed} == {"Ada Lovelace", "Alan Turing"}
    assert all("password" not in p for p in listed)


@pytest.mark.parametrize("names", [[], [""], ["   "], ["x" * 121], "Ada", [5]])
def test_it_rejects_a_bad_roster(tom, biology, names):
    response = client_for(tom).post(f"/api/v1/classes/{biology.pk}/pupils", {"names": names}, format="json")
    assert response.status_code == 400
    assert not User.objects.filter(role=Role.PUPIL).exists()


def test_the_teacher_renames_a_pupil_and_pupils_cannot_rename_themselves(tom, biology):
    ((member, _),) = roster(biology, "Ada")
    response = client_for(tom).patch(
        f"/api/v1/classes/{biology.pk}/pupils/{member.pupil_id}", {"real_name": "Ada L."}, format="json"
    )
    assert response.status_code == 200
    member.refresh_from_db()
    assert member.real_name == "Ada L."
    pseudonym = member.pupil.pseudonym
    pupil = client_for(member.pupil)
    assert pupil.post("/api/v1/accounts/guest/upgrade", {"username": "ada", "password": "x" * 12}).status_code == 403
    url = f"/api/v1/classes/{biology.pk}/pupils/{member.pupil_id}"
    assert pupil.patch(url, {"real_name": "me"}, format="json").status_code == 403
    member.pupil.refresh_from_db()
    assert member.pupil.pseudonym == pseudonym and member.pupil.username != "ada"


def test_a_password_reset_replaces_the_old_password(tom, biology):
    ((member, old),) = roster(biology, "Ada")
    response = client_for(tom).post(f"/api/v1/classes/{biology.pk}/pupils/{member.pupil_id}/password")
    assert response.status_code == 200
    new = response.json()["password"]
    assert new != old
    assert authenticate(username=member.pupil.username, password=old) is None
    assert authenticate(username=member.pupil.username, password=new) is not None


def test_login_cards_carry_username_new_password_and_the_join_link(tom, biology):
    created = roster(biology, "Ada Lovelace", "Alan Turing")
    response = client_for(tom).post(f"/api/v1/classes/{biology.pk}/login-cards", {}, format="json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf" and response["Cache-Control"] == "no-store"
    pdf = response.content
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    for member, old_password in created:
        assert member.pupil.username in text and member.real_name in text
        assert authenticate(username=member.pupil.username, password=old_password) is None  # a new one was printed
    assert f"/join/{biology.join_code}" in text
    for member, _ in created:  # each card's QR code opens the join page with its username filled in
        assert f"/join/{biology.join_code}?u={member.pupil.username}" in text
    assert b"/Subtype /Image" in pdf  # the QR code


def test_login_cards_for_some_pupils_change_only_their_passwords(tom, biology):
    (ada, ada_password), (alan, alan_password) = roster(biology, "Ada", "Alan")
    url = f"/api/v1/classes/{biology.pk}/login-cards"
    response = client_for(tom).post(url, {"pupils": [ada.pupil_id]}, format="json")
    assert response.status_code == 200
    assert authenticate(username=alan.pupil.username, password=alan_password) is not None
    assert authenticate(username=ada.pupil.username, password=ada_password) is None
    stranger = UserFactory(role=Role.PUPIL)
    response = client_for(tom).post(url, {"pupils": [stranger.pk]}, format="json")
    assert response.status_code == 400


def test_a_card_shows_the_password_as_words_and_pictures():
    card = LoginCard("Zoë", "otter0001", "moon-star-374", "Year 9 Biology", "https://example.org/join/ABCDEF")
    pdf = login_cards_pdf([card])
    text = pdf_text(pdf)
    assert "moon-star-374" in text and "MOON" in text and "STAR" in text and "otter0001" in text and "Zo" in text
    assert b"DejaVuSans" in pdf  # the font the moon and the star are drawn in
    eleven = login_cards_pdf([card] * 11)
    assert eleven.count(b"/Type /Page\n") == 2  # ten cards to a page


def test_a_pupil_moves_to_another_class_or_is_in_both(tom, tina, biology):
    chemistry = classroom_services.classroom_create(teacher=tom, name="Chemistry")
    tinas = classroom_services.classroom_create(teacher=tina, name="Tina's class")
    (ada, _), (alan, _) = roster(biology, "Ada", "Alan")
    client = client_for(tom)
    url = f"/api/v1/classes/{biology.pk}/pupils/{{}}/move"
    assert client.post(url.format(ada.pupil_id), {"to": chemistry.pk}, format="json").status_code == 200
    assert list(ClassMember.objects.filter(pupil=ada.pupil).values_list("classroom", "real_name")) == [
        (chemistry.pk, "Ada")
    ]
    assert client.post(url.format(alan.pupil_id), {"to": chemistry.pk, "keep": True}, format="json").status_code == 200
    assert ClassMember.objects.filter(pupil=alan.pupil).count() == 2
    # Not to another teacher's class, nor to the class they are in.
    assert client.post(url.format(alan.pupil_id), {"to": tinas.pk}, format="json").status_code == 404
    assert client.post(url.format(alan.pupil_id), {"to": biology.pk}, format="json").status_code == 400
    assert not tinas.members.exists()


# -- erasure -----------------------------------------------------------------------------------


@pytest.fixture
def assigned(alice, biology):
    from .conftest import campaign_make

    game = campaign_make(alice, images=4, golds=0, round_size=1)
    Assignment.objects.create(
        classroom=biology, campaign=game.campaign, target_tasks=2, due_at=timezone.now() + timedelta(days=7)
    )
    return game.campaign


def test_deleting_a_pupil_erases_them_and_keeps_their_labels_under_the_rater_id(tom, biology, assigned):
    ((member, password),) = roster(biology, "Ada Lovelace")
    pupil = member.pupil
    annotation_id = play(pupil, assigned)
    research_id = rater_id(pupil.pk)
    response = client_for(tom).delete(f"/api/v1/classes/{biology.pk}/pupils/{pupil.pk}")
    assert response.status_code == 200 and response.json() == {"erased": True}
    pupil.refresh_from_db()
    assert pupil.username == f"erased-{research_id}" and pupil.pseudonym == "" and not pupil.is_active
    assert not pupil.has_usable_password()
    assert not ClassMember.objects.filter(pupil=pupil).exists()
    assert not PlayerStats.objects.filter(player=pupil).exists()
    assert Annotation.objects.get(pk=annotation_id).annotator_id == pupil.pk  # the label stays
    assert rater_id(pupil.pk) == research_id
    assert authenticate(username=member.pupil.username, password=password) is None


def test_a_pupil_still_in_another_teachers_class_is_only_taken_out(tom, tina, biology):
    ((member, _),) = roster(biology, "Ada")
    tinas = classroom_services.classroom_create(teacher=tina, name="Tina's class")
    classroom_services.classroom_join(classroom=tinas, pupil=member.pupil)
    assert client_for(tom).delete(f"/api/v1/classes/{biology.pk}/pupils/{member.pupil_id}").json() == {"erased": False}
    member.pupil.refresh_from_db()
    assert member.pupil.is_active and member.pupil.pseudonym
    assert list(ClassMember.objects.filter(pupil=member.pupil).values_list("classroom", flat=True)) == [tinas.pk]


def test_deleting_a_class_erases_its_pupils(tom, biology, assigned):
    created = roster(biology, "Ada", "Alan")
    response = client_for(tom).delete(f"/api/v1/classes/{biology.pk}")
    assert response.status_code == 200 and response.json() == {"pupils_erased": 2}
    assert not Classroom.objects.filter(pk=biology.pk).exists() and not Assignment.objects.exists()
    for member, _ in created:
        assert User.objects.get(pk=member.pupil_id).username.startswith("erased-r")
    assert Classroom.objects.count() == 0 and assigned.pk  # the campaign stays


def test_the_retention_job_erases_pupils_after_their_class_retention_period(tom, biology):
    from django.conf import settings

    from gamification import tasks

    biology.retention_days = 30
    biology.save()
    long_kept = classroom_services.classroom_create(teacher=tom, name="kept", retention_days=400)
    (old, _), (recent, _) = roster(biology, "Old", "Recent")
    ((kept, _),) = roster(long_kept, "Kept")
    ClassMember.objects.filter(pk__in=[old.pk, kept.pk]).update(joined_at=timezone.now() - timedelta(days=31))
    assert tasks.classrooms_enforce_retention.apply().get() == 1  # the beat job, run here
    assert User.objects.get(pk=old.pupil_id).username.startswith("erased-")
    assert User.objects.get(pk=recent.pupil_id).is_active
    assert User.objects.get(pk=kept.pupil_id).is_active
    assert classroom_services.memberships_expire() == 0  # running it again changes nothing
    schedule = settings.CELERY_BEAT_SCHEDULE["classrooms-enforce-retention"]
    assert schedule["task"] == "gamification.tasks.classrooms_enforce_retention"


# -- another teacher's class -------------------------------------------------------------------


def test_another_teacher_finds_nothing_of_the_class(tom, tina, biology, assigned):
    ((member, password),) = roster(biology, "Ada Lovelace")
    assignment = Assignment.objects.get()
    tinas = classroom_services.classroom_create(teacher=tina, name="Tina's class")
    base = f"/api/v1/classes/{biology.pk}"
    pupil = f"{base}/pupils/{member.pupil_id}"
    calls = [
        ("get", base, None),
        ("patch", base, {"name": "taken"}),
        ("delete", base, None),
        ("post", f"{base}/join-code", None),
        ("get", f"{base}/pupils", None),
        ("post", f"{base}/pupils", {"names": ["Eve"]}),
        ("patch", pupil, {"real_name": "x"}),
        ("delete", pupil, None),
        ("post", f"{pupil}/password", None),
        ("post", f"{pupil}/move", {"to": tinas.pk}),
        ("post", f"{base}/login-cards", {}),
        ("get", f"{base}/assignments", None),
        ("post", f"{base}/assignments", {"campaign": assigned.pk, "target_tasks": 1, "due_at": "2099-01-01T00:00Z"}),
        ("get", f"{base}/assignments/{assignment.pk}", None),
        ("delete", f"{base}/assignments/{assignment.pk}", None),
        ("get", f"{base}/assignments/{assignment.pk}/export.csv", None),
        ("get", f"{base}/assignments/{assignment.pk}/export.xlsx", None),
        # Her own class, with Tom's pupil in the URL.
        ("post", f"/api/v1/classes/{tinas.pk}/pupils/{member.pupil_id}/password", None),
    ]
    client = client_for(tina)
    for method, url, body in calls:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert b"Lovelace" not in response.content and b"Biology" not in response.content
    biology.refresh_from_db()
    assert biology.name == "Year 9 Biology" and biology.members.count() == 1
    assert authenticate(username=member.pupil.username, password=password) is not None
    assert Assignment.objects.count() == 1


def test_the_join_page_is_a_form_that_looks_nothing_up(biology):
    response = Client().get(f"/join/{biology.join_code}?u=%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.status_code == 200
    text = response.content.decode()
    assert f'value="{biology.join_code}"' in text and "/api/v1/classes/join" in text
    assert "Year 9 Biology" not in text  # the page does not say whether the class exists
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    assert "csrftoken" in response.cookies


def test_the_join_page_knows_a_signed_in_pupil(biology):
    ((member, _),) = roster(biology, "Ada")
    client = Client()
    client.force_login(member.pupil)
    text = client.get(f"/join/{biology.join_code}").content.decode()
    assert f"Signed in as {member.pupil.pseudonym}" in text and "Lovelace" not in text


def test_a_card_holder_signs_in_and_joins_without_a_second_account(tom, biology):
    ((member, password),) = roster(biology, "Ada")
    chemistry = classroom_services.classroom_create(teacher=tom, name="Chemistry")
    client = APIClient()
    login = client.post(
        "/_allauth/browser/v1/auth/login", {"username": member.pupil.username, "password": password}, format="json"
    )
    assert login.status_code == 200
    pupils = User.objects.filter(role=Role.PUPIL).count()
    for code in (biology.join_code, chemistry.join_code):
        response = client.post("/api/v1/classes/join", {"code": code}, format="json")
        assert response.status_code == 200 and response.json()["user"]["id"] == member.pupil_id
    assert User.objects.filter(role=Role.PUPIL).count() == pupils
    assert ClassMember.objects.filter(pupil=member.pupil).count() == 2


def test_accounts_made_by_joining_are_throttled_per_address(biology, monkeypatch):
    from gamification.api.classrooms import JoinThrottle

    monkeypatch.setattr(JoinThrottle, "THROTTLE_RATES", {**JoinThrottle.THROTTLE_RATES, "class_join": "2/hour"})
    answers = [
        APIClient().post("/api/v1/classes/join", {"code": biology.join_code}, format="json").status_code
        for _ in range(3)
    ]
    assert answers == [201, 201, 429]
    assert biology.members.count() == 2


def test_retention_ends_an_old_membership_but_keeps_a_pupil_still_in_another_class(tom, biology):
    chemistry = classroom_services.classroom_create(teacher=tom, name="Chemistry", retention_days=400)
    ((member, _),) = roster(biology, "Ada")
    classroom_services.classroom_join(classroom=chemistry, pupil=member.pupil)
    ClassMember.objects.filter(pupil=member.pupil).update(joined_at=timezone.now() - timedelta(days=366))
    assert classroom_services.memberships_expire() == 0
    member.pupil.refresh_from_db()
    assert member.pupil.is_active
    assert list(ClassMember.objects.filter(pupil=member.pupil).values_list("classroom", flat=True)) == [chemistry.pk]
