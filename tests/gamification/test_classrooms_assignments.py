"""Assignments and the class dashboard, and children's privacy: what pupils, classmates, the public
leaderboard and researchers can see of a pupil."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from openpyxl import load_workbook

from accounts.services import rater_id
from gamification import classroom_services, services
from gamification.models import Assignment, CheckReport, LeaderboardEntry, PlayerStats
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import campaign_make, play, roster

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(alice):
    return campaign_make(alice, images=4, golds=0, round_size=1).campaign


def due(days: int = 7) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


def test_a_teacher_assigns_a_campaign_with_a_target_and_a_due_date(tom, biology, campaign):
    url = f"/api/v1/classes/{biology.pk}/assignments"
    response = client_for(tom).post(url, {"campaign": campaign.pk, "target_tasks": 10, "due_at": due()}, format="json")
    assert response.status_code == 201, response.content
    assignment = Assignment.objects.get()
    assert (assignment.classroom, assignment.campaign, assignment.target_tasks) == (biology, campaign, 10)
    listed = client_for(tom).get(url).json()["assignments"]
    assert [a["campaign"]["name"] for a in listed] == [campaign.name]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"target_tasks": 0}, 400),
        ({"target_tasks": "10"}, 400),
        ({"due_at": "yesterday"}, 400),
        ({"due_at": "2001-01-01T00:00:00Z"}, 400),
        ({"campaign": 10**12}, 404),
    ],
)
def test_it_rejects_a_bad_assignment(tom, biology, campaign, body, status):
    data = {"campaign": campaign.pk, "target_tasks": 10, "due_at": due(), **body}
    response = client_for(tom).post(f"/api/v1/classes/{biology.pk}/assignments", data, format="json")
    assert response.status_code == status
    assert not Assignment.objects.exists()


def test_a_campaign_is_assigned_once(tom, biology, campaign):
    url = f"/api/v1/classes/{biology.pk}/assignments"
    body = {"campaign": campaign.pk, "target_tasks": 10, "due_at": due()}
    assert client_for(tom).post(url, body, format="json").status_code == 201
    assert client_for(tom).post(url, body, format="json").status_code == 409
    assert Assignment.objects.count() == 1


def test_an_invite_only_campaign_the_teacher_was_not_given_cannot_be_assigned(tom, biology, alice):
    from gamification.models import Campaign

    hidden = campaign_make(alice, images=2, golds=0, visibility=Campaign.Visibility.INVITE).campaign
    body = {"campaign": hidden.pk, "target_tasks": 1, "due_at": due()}
    response = client_for(tom).post(f"/api/v1/classes/{biology.pk}/assignments", body, format="json")
    assert response.status_code == 404 and hidden.name.encode() not in response.content


def test_the_dashboard_shows_each_pupils_progress_accuracy_and_time(tom, biology, campaign):
    (ada, _), (alan, _) = roster(biology, "Ada", "Alan")
    assignment = classroom_services.assignment_create(
        classroom=biology, campaign=campaign, target_tasks=2, due_at=timezone.now() + timedelta(days=7)
    )
    play(ada.pupil, campaign)
    CheckReport.objects.create(player=ada.pupil, campaign=campaign, block=0, checks=3, mean_quality=0.8, accuracy=0.8)
    response = client_for(tom).get(f"/api/v1/classes/{biology.pk}/assignments/{assignment.pk}")
    assert response.status_code == 200
    rows = {row["real_name"]: row for row in response.json()["pupils"]}
    assert rows["Ada"]["tasks_submitted"] == 1 and rows["Ada"]["percent"] == 50
    assert rows["Ada"]["check_accuracy"] == pytest.approx(0.8)
    assert rows["Ada"]["time_spent_s"] == pytest.approx(8.0)
    assert rows["Ada"]["status"] == "in progress" and rows["Ada"]["last_submitted_at"]
    assert rows["Alan"]["tasks_submitted"] == 0 and rows["Alan"]["status"] == "not started"
    assert rows["Alan"]["check_accuracy"] is None
    # Past the due date, an unfinished pupil is overdue.
    Assignment.objects.filter(pk=assignment.pk).update(due_at=timezone.now() - timedelta(minutes=1))
    rows = client_for(tom).get(f"/api/v1/classes/{biology.pk}/assignments/{assignment.pk}").json()["pupils"]
    assert {row["real_name"]: row["status"] for row in rows} == {"Ada": "overdue", "Alan": "overdue"}


def test_the_dashboard_exports_as_csv_and_xlsx(tom, biology, campaign):
    (ada, _), (_eve, _) = roster(biology, "Ada", "=HYPERLINK(evil)")
    assignment = classroom_services.assignment_create(
        classroom=biology, campaign=campaign, target_tasks=1, due_at=timezone.now() + timedelta(days=7)
    )
    play(ada.pupil, campaign)
    base = f"/api/v1/classes/{biology.pk}/assignments/{assignment.pk}/export"
    response = client_for(tom).get(f"{base}.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_name = {row["pupil"]: row for row in rows}
    assert by_name["Ada"]["tasks_submitted"] == "1" and by_name["Ada"]["status"] == "done"
    assert "'=HYPERLINK(evil)" in by_name  # not run as a formula by a spreadsheet
    response = client_for(tom).get(f"{base}.xlsx")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    values = list(sheet.values)
    assert "Year 9 Biology" in values[0][0]
    assert values[1][:3] == ("pupil", "pseudonym", "tasks_submitted")
    assert {row[0]: row[2] for row in values[2:]} == {"Ada": 1, "'=HYPERLINK(evil)": 0}
    assert client_for(tom).get(f"{base}.pdf").status_code == 404


# -- children's privacy ------------------------------------------------------------------------


def test_pupils_see_only_their_classes_campaigns(tom, biology, campaign, alice):
    public_elsewhere = campaign_make(alice, images=2, golds=0).campaign
    ((ada, _),) = roster(biology, "Ada")
    pupil = client_for(ada.pupil)
    assert pupil.get("/api/v1/campaigns").json()["results"] == []
    assert pupil.post(f"/api/v1/campaigns/{campaign.pk}/join", {}, format="json").status_code == 404
    classroom_services.assignment_create(
        classroom=biology, campaign=campaign, target_tasks=1, due_at=timezone.now() + timedelta(days=7)
    )
    assert [c["id"] for c in pupil.get("/api/v1/campaigns").json()["results"]] == [campaign.pk]
    assert pupil.post(f"/api/v1/campaigns/{campaign.pk}/join", {}, format="json").status_code == 200
    assert pupil.post(f"/api/v1/campaigns/{public_elsewhere.pk}/join", {}, format="json").status_code == 404
    # A volunteer still sees public campaigns.
    assert len(client_for(UserFactory()).get("/api/v1/campaigns").json()["results"]) == 2


def test_pupils_are_on_no_public_leaderboard_and_get_no_streaks(tom, biology, campaign):
    ((ada, _),) = roster(biology, "Ada")
    classroom_services.assignment_create(
        classroom=biology, campaign=campaign, target_tasks=1, due_at=timezone.now() + timedelta(days=7)
    )
    play(ada.pupil, campaign)
    services.leaderboard_add(player=ada.pupil, campaign=campaign, points=500, now=timezone.now())
    volunteer = UserFactory()
    services.leaderboard_add(player=volunteer, campaign=campaign, points=10, now=timezone.now())
    assert not LeaderboardEntry.objects.filter(player=ada.pupil).exists()
    board = client_for(volunteer).get("/api/v1/leaderboard").json()
    assert [row["pseudonym"] for row in board["top"]] == [volunteer.pseudonym]
    stats = PlayerStats.objects.get(player=ada.pupil)
    assert stats.tasks_submitted == 1 and stats.streak == 0 and stats.last_played_day is None
    game = client_for(ada.pupil).get("/api/v1/me/game").json()
    assert "streak" not in game and "best_streak" not in game
    assert not {b["code"] for b in game["badges"]} & {"three-day-streak", "week-streak"}
    # A volunteer keeps theirs.
    assert "streak" in client_for(volunteer).get("/api/v1/me/game").json()


def test_a_pupil_sees_their_assignments_but_not_their_classmates(tom, biology, campaign):
    (ada, _), (alan, _) = roster(biology, "Ada Lovelace", "Alan Turing")
    classroom_services.assignment_create(
        classroom=biology, campaign=campaign, target_tasks=3, due_at=timezone.now() + timedelta(days=7)
    )
    play(ada.pupil, campaign)
    response = client_for(ada.pupil).get("/api/v1/me/classes")
    assert response.status_code == 200
    (classroom,) = response.json()["classes"]
    assert classroom["name"] == "Year 9 Biology"
    assert [(a["campaign"]["id"], a["tasks_submitted"], a["target_tasks"]) for a in classroom["assignments"]] == [
        (campaign.pk, 1, 3)
    ]
    text = response.content.decode()
    for secret in ("Alan", "Turing", alan.pupil.pseudonym, alan.pupil.username, biology.join_code):
        assert secret not in text
    # Pupils do not reach the teacher's pages of their own class.
    assert client_for(ada.pupil).get(f"/api/v1/classes/{biology.pk}/pupils").status_code == 403


def test_a_pupil_downloads_their_data(tom, biology, campaign):
    ((ada, _),) = roster(biology, "Ada Lovelace")
    classroom_services.assignment_create(
        classroom=biology, campaign=campaign, target_tasks=3, due_at=timezone.now() + timedelta(days=7)
    )
    play(ada.pupil, campaign)
    response = client_for(ada.pupil).get("/api/v1/me/data")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    data = response.json()
    assert data["account"]["username"] == ada.pupil.username and data["account"]["email"] is None
    assert data["account"]["research_id"] == rater_id(ada.pupil.pk)
    assert data["classes"] == [
        {
            "class": "Year 9 Biology",
            "name_your_teacher_uses": "Ada Lovelace",
            "joined_at": data["classes"][0]["joined_at"],
        }
    ]
    assert len(data["submissions"]) == 1 and data["submissions"][0]["campaign"] == campaign.name
    assert "gold" not in response.content.decode()  # which tasks were checks stays hidden


def test_researchers_see_a_pupil_only_as_an_opaque_rater_id(tom, biology, campaign, alice):
    from django.test import Client

    from accounts.services import user_role_set

    ((ada, _),) = roster(biology, "Ada Lovelace")
    classroom_services.assignment_create(
        classroom=biology, campaign=campaign, target_tasks=3, due_at=timezone.now() + timedelta(days=7)
    )
    play(ada.pupil, campaign)
    user_role_set(user=alice, role="researcher")  # the admin's researcher access
    client = Client()
    client.force_login(alice)
    from annotations.models import AnnotatorReliability

    rates = dict.fromkeys(["sensitivity", "precision", "specificity", "weight"], 0.9)
    sds = dict.fromkeys(["sensitivity_sd", "precision_sd", "specificity_sd"], 0.05)
    reliability = AnnotatorReliability.objects.create(
        annotator=ada.pupil, label_class=campaign.label_classes.get(), images=1, golds=0, **rates, **sds
    )
    for url in ("/admin/gamification/submission/", "/admin/annotations/annotation/"):
        response = client.get(url)
        assert response.status_code == 200
        text = response.content.decode()
        assert rater_id(ada.pupil.pk) in text
        assert ada.pupil.username not in text and "Lovelace" not in text
    exported = client.post(
        "/admin/annotations/annotatorreliability/", {"action": "download_csv", "_selected_action": [reliability.pk]}
    )
    row = list(csv.DictReader(io.StringIO(exported.content.decode())))[0]
    assert row["rater"] == rater_id(ada.pupil.pk)  # everyone's row: the rater id and nothing else of them
    assert ada.pupil.username not in exported.content.decode() and ada.pupil.pseudonym not in exported.content.decode()
