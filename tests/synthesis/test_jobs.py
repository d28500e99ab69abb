"""Synthesis and validation jobs in the product: start, progress, cancel, resume, split, API."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotations.models import Annotation, GoldStandard, Task
from inference.engine import rle
from synthesis import services
from synthesis.models import Job, SyntheticSample
from tests.conftest import client_for, eventually
from tests.factories import DatasetFactory, UserFactory, image_import

pytestmark = pytest.mark.django_db

H, W = 48, 64
TINY_PIX2PIX = {"size": 32, "epochs": 2, "samples": 6}
TINY_VALIDATION = {"size": 32, "steps": 10, "seeds": 1}


def blob(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[:H, :W]
    cy, cx, r = rng.uniform(18, 30), rng.uniform(20, 44), rng.uniform(8, 12)
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


@pytest.fixture
def labelled(alice):
    """16 images: 10 with expert golds, 6 with three volunteers' masks each."""
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    tasks = [image_import(dataset, height=H, width=W, seed=i).tasks.get() for i in range(16)]
    for i, task in enumerate(tasks[:10]):
        mask = blob(i)
        GoldStandard.objects.create(task=task, mask=rle.encode(mask), area=int(mask.sum()))
    # Which images are held out depends on the dataset's secret and the images' random ids: pick
    # a secret that holds out 2 to 5 of the 10 expert images, so every test has both sides.
    for attempt in range(100):
        dataset.uid_key = f"test-key-{attempt}"
        if 2 <= sum(services.is_held_out(dataset, t.image_id) for t in tasks[:10]) <= 5:
            break
    dataset.save(update_fields=["uid_key"])
    volunteers = UserFactory.create_batch(3)
    for i, task in enumerate(tasks[10:], start=10):
        for k, person in enumerate(volunteers):
            mask = np.roll(blob(i), k - 1, axis=1)
            Annotation.objects.create(
                task=task, annotator=person, mask=rle.encode(mask), area=int(mask.sum()), client_key=f"{i}-{k}"
            )
    return dataset


def run(dataset, kind, params, user=None) -> Job:
    job = services.job_start(dataset=dataset, kind=kind, created_by=user, params=params, enqueue=False)
    return services.job_run(job_id=job.pk)


def test_the_held_out_split_is_stable_and_never_trained_on(labelled):
    train, held_out, others = services.split(labelled)
    assert len(train) + len(held_out) == 10 and len(others) == 6
    assert held_out, "this fixture's dataset key must hold out at least one image"
    assert services.split(labelled)[1] == held_out
    assert not {i.pk for i in held_out} & {i.pk for i in train + others}
    # Adding images changes nothing for the ones already there.
    image_import(labelled, height=H, width=W, seed=99)
    assert services.split(labelled)[1] == held_out


def test_pix2pix_job_trains_generates_and_records_provenance(labelled, alice):
    tasks_before = Task.objects.count()
    job = run(labelled, Job.Kind.PIX2PIX, TINY_PIX2PIX, alice)
    assert job.status == Job.Status.DONE, job.error
    assert [h["epoch"] for h in job.history] == [1, 2]
    assert job.result["samples"] == 6 and job.result["generator_version"]
    assert bytes(job.figure).startswith(b"\x89PNG")
    from django.test import Client

    from accounts.services import user_role_set

    user_role_set(user=alice, role="researcher")
    admin = Client()
    admin.force_login(alice)
    assert admin.get(f"/admin/synthesis/job/{job.pk}/change/").status_code == 200
    curve = admin.get(f"/admin/synthesis/job/{job.pk}/curve.png")
    assert curve.status_code == 200 and curve.content.startswith(b"\x89PNG")
    samples = list(SyntheticSample.objects.filter(job=job))
    assert len(samples) == 6 and all(s.generator_version == job.result["generator_version"] for s in samples)
    held_out = {str(t.pk) for i in services.split(labelled)[1] for t in i.tasks.all()}
    assert samples[0].source_tasks and not set(samples[0].source_tasks) & held_out
    assert Task.objects.count() == tasks_before  # synthetic pairs never become tasks volunteers see


def test_one_active_job_per_dataset(labelled):
    services.job_start(dataset=labelled, kind=Job.Kind.PIX2PIX, created_by=None, params=TINY_PIX2PIX, enqueue=False)
    from crowdseg.errors import Conflict

    with pytest.raises(Conflict):
        services.job_start(dataset=labelled, kind=Job.Kind.VALIDATION, created_by=None, enqueue=False)


def test_bad_parameters_are_refused(labelled):
    from crowdseg.errors import DomainError

    for params in ({"epochs": 0}, {"size": "big"}, {"learning_rate": 1}):
        with pytest.raises(DomainError):
            services.job_start(dataset=labelled, kind=Job.Kind.PIX2PIX, created_by=None, params=params)
    assert not Job.objects.exists()


def test_cancel_stops_after_the_epoch_and_resume_finishes_from_the_checkpoint(labelled, monkeypatch):
    job = services.job_start(
        dataset=labelled, kind=Job.Kind.PIX2PIX, created_by=None, params={**TINY_PIX2PIX, "epochs": 3}, enqueue=False
    )
    original = services._report

    def cancel_after_first_epoch(job_, stage, done, total, eta, entry=None):
        if entry is not None and entry.get("epoch") == 1:
            Job.objects.filter(pk=job_.pk).update(cancel_requested=True)
        return original(job_, stage, done, total, eta, entry)

    monkeypatch.setattr(services, "_report", cancel_after_first_epoch)
    cancelled = services.job_run(job_id=job.pk)
    assert cancelled.status == Job.Status.CANCELLED and [h["epoch"] for h in cancelled.history] == [1]
    monkeypatch.setattr(services, "_report", original)
    services.job_resume(job=cancelled)
    done = services.job_run(job_id=job.pk)
    assert done.status == Job.Status.DONE and [h["epoch"] for h in done.history] == [1, 2, 3]
    assert done.attempts == 2


def test_a_dead_workers_job_is_taken_over_but_a_live_one_is_not(labelled):
    job = services.job_start(
        dataset=labelled, kind=Job.Kind.PIX2PIX, created_by=None, params=TINY_PIX2PIX, enqueue=False
    )
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, heartbeat_at=timezone.now())
    assert services.job_claim(job_id=job.pk) is None
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=30))
    assert services.jobs_resume_stale() == 1
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED
    assert services.job_run(job_id=job.pk).status == Job.Status.DONE


def test_validation_scores_every_arm_on_held_out_experts(labelled):
    run(labelled, Job.Kind.PIX2PIX, TINY_PIX2PIX)
    job = run(labelled, Job.Kind.VALIDATION, TINY_VALIDATION)
    assert job.status == Job.Status.DONE, job.error
    report = job.result
    assert set(report["arms"]) == {"expert_only", "fused", "fused_synthetic", "expert_synthetic"}
    assert report["held_out_images"] == len(services.split(labelled)[1])
    assert report["arms"]["fused"]["train_size"] == 6
    assert report["arms"]["fused_synthetic"]["train_size"] == 12
    assert all(0 <= arm["dice_mean"] <= 1 for arm in report["arms"].values())
    assert bytes(job.figure).startswith(b"\x89PNG")


def test_validation_without_synthesis_says_which_arms_it_skipped(labelled):
    job = run(labelled, Job.Kind.VALIDATION, TINY_VALIDATION)
    assert set(job.result["arms"]) == {"expert_only", "fused"}
    assert set(job.result["skipped_arms"]) == {"fused_synthetic", "expert_synthetic"}


def test_validation_needs_held_out_experts(alice):
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    image_import(dataset, height=H, width=W)
    job = run(dataset, Job.Kind.VALIDATION, TINY_VALIDATION)
    assert job.status == Job.Status.FAILED and "held-out expert images" in job.error


@pytest.mark.django_db(transaction=True)
def test_jobs_over_the_api(labelled, alice, charlie, celery_tasks_run):
    client = client_for(alice)
    started = client.post(
        f"/api/v1/datasets/{labelled.pk}/jobs", {"kind": "pix2pix", "params": TINY_PIX2PIX}, format="json"
    )
    assert started.status_code == 201, started.json()
    job_id = started.json()["id"]
    detail = eventually(lambda: (d := client.get(f"/api/v1/jobs/{job_id}").json())["status"] == "done" and d, 120)
    assert detail and detail["progress"]["stage"] == "generating synthetic pairs"
    assert client_for(charlie).get(f"/api/v1/jobs/{job_id}").status_code == 404
    bad = client.post(f"/api/v1/datasets/{labelled.pk}/jobs", {"kind": "dream"}, format="json")
    assert bad.status_code == 400
    assert client.post(f"/api/v1/jobs/{job_id}/resume").status_code == 409  # done jobs do not resume


def test_validate_dataset_command(labelled):
    out = io.StringIO()
    call_command(
        "validate_dataset", "--dataset", labelled.name, "--synthesize", "--size", "32", "--epochs", "1",
        "--steps", "10", "--seeds", "1", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert "expert_only" in out.getvalue() and "fused_synthetic" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("validate_dataset", "--dataset", "nope", stdout=io.StringIO(), stderr=io.StringIO())
