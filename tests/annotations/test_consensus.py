"""Fusion in the product: fused labels and reliabilities stored, refreshed, reviewed, reported."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from PIL import Image as PILImage

from accounts.models import User
from accounts.services import rater_id, user_role_set
from annotations import consensus, figures, fusion, services
from annotations.metrics import dice
from annotations.models import Annotation, AnnotatorReliability, FusedLabel, GoldStandard
from inference.engine import rle
from tests.factories import DatasetFactory, UserFactory, image_import

pytestmark = pytest.mark.django_db

H, W = 48, 64


def disk(cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.ogrid[:H, :W]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def annotate(task, user, mask, use="none"):
    return Annotation.objects.create(
        task=task,
        annotator=user,
        mask=rle.encode(mask),
        area=int(mask.sum()),
        suggestion_use=use,
        client_key=f"{user.pk}-{task.pk}",
    )


@pytest.fixture
def crowd(alice):
    """8 images of a round structure; 3 careful annotators, 1 who submits empty masks; 2 golds."""
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    images = [image_import(dataset, height=H, width=W, seed=i) for i in range(8)]
    tasks = [image.tasks.get() for image in images]
    careful = UserFactory.create_batch(3)
    spammer = UserFactory(pseudonym="empty-hands")
    rng = np.random.default_rng(0)
    truths = {}
    for task in tasks:
        cy, cx = rng.uniform(18, 30), rng.uniform(20, 44)
        truths[task.pk] = disk(cy, cx, 10)
        for i, person in enumerate(careful):
            annotate(task, person, disk(cy + rng.normal(0, 0.5), cx + rng.normal(0, 0.5), 10 + (i - 1) * 0.5))
        annotate(task, spammer, np.zeros((H, W), bool))
    for task in tasks[:2]:
        GoldStandard.objects.create(task=task, mask=rle.encode(truths[task.pk]), area=int(truths[task.pk].sum()))
    return dataset.label_classes.get(), tasks, careful, spammer, truths


def test_fusion_run_stores_labels_and_reliabilities(crowd):
    label_class, tasks, careful, spammer, truths = crowd
    result = consensus.fusion_run(label_class=label_class)
    assert result is not None and len(result.images) == 8
    assert FusedLabel.objects.count() == 8
    for task in tasks[2:]:
        fused = FusedLabel.objects.get(task=task)
        mask = rle.decode(fused.mask)
        assert 2 * (mask & truths[task.pk]).sum() / (mask.sum() + truths[task.pk].sum()) > 0.9
        assert fused.votes == 4 and 0 <= fused.confidence <= 1
        assert figures.grey_from_png(fused.probability).shape == (H, W)
    weights = dict(AnnotatorReliability.objects.values_list("annotator_id", "weight"))
    assert weights[spammer.pk] < 0.1
    assert all(weights[p.pk] > 0.5 for p in careful)


def test_a_gold_tasks_fused_label_is_the_crowds_own_not_the_gold(crowd):
    """What players are shown and scored against is the same kind of label on every task: on gold
    tasks what the votes say (here, the spammer's empty votes and the careful ones), never the gold."""
    label_class, tasks, careful, spammer, truths = crowd
    consensus.fusion_run(label_class=label_class)
    for task in tasks[:2]:  # the gold tasks
        fused = FusedLabel.objects.get(task=task)
        mask = rle.decode(fused.mask)
        assert not np.array_equal(mask, truths[task.pk])
        assert 2 * (mask & truths[task.pk]).sum() / (mask.sum() + truths[task.pk].sum()) > 0.9
        assert fused.confidence < 1.0 and fused.gain > 0 and fused.votes == 4
        assert fused.review == FusedLabel.Review.NONE  # a gold task needs no review


def test_refresh_after_a_new_vote_is_safe_to_run_twice(crowd):
    label_class, tasks, careful, spammer, truths = crowd
    consensus.fusion_run(label_class=label_class)
    newcomer = UserFactory()
    annotate(tasks[5], newcomer, truths[tasks[5].pk])
    assert list(consensus.tasks_needing_fusion(label_class)) == [tasks[5]]
    first = FusedLabel.objects.get(task=consensus.fusion_refresh(label_class=label_class)[0])
    assert not consensus.tasks_needing_fusion(label_class).exists()
    consensus.fusion_refresh(label_class=label_class, tasks=[tasks[5]])
    again = FusedLabel.objects.get(task=tasks[5])
    assert first.votes == again.votes == 5
    assert first.mask == again.mask and first.confidence == pytest.approx(again.confidence, abs=1e-3)  # EM tol
    assert AnnotatorReliability.objects.filter(annotator=newcomer).exists()


def test_refresh_without_a_cached_result_runs_the_full_fusion(crowd):
    label_class, tasks, *_ = crowd
    consensus.forget_cached_results()
    assert len(consensus.fusion_refresh(label_class=label_class)) == 8
    assert FusedLabel.objects.count() == 8


def test_unchanged_acceptances_count_once_as_the_model(alice):
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    task = image_import(dataset, height=H, width=W).tasks.get()
    suggestion = disk(24, 32, 14)
    accepting = UserFactory.create_batch(3)
    for person in accepting:
        annotate(task, person, suggestion, use="accepted")
    annotate(task, UserFactory(), disk(24, 32, 10))
    consensus.fusion_run(label_class=dataset.label_classes.get())
    assert FusedLabel.objects.get(task=task).votes == 2  # the model once, the independent annotator once
    assert AnnotatorReliability.objects.filter(annotator__isnull=True).exists()  # the model's own estimate
    anchored = dict(AnnotatorReliability.objects.filter(annotator__in=accepting).values_list("annotator", "anchored"))
    assert anchored == {p.pk: 1 for p in accepting}


def test_light_edits_of_the_suggestion_count_as_the_model_and_heavy_ones_as_their_own(alice):
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    task = image_import(dataset, height=H, width=W).tasks.get()
    suggestion = disk(24, 32, 14)
    annotate(task, UserFactory(), suggestion, use="accepted")
    light, heavy = UserFactory(), UserFactory()
    annotate(task, light, disk(24, 33, 14), use="edited")  # moved a pixel: still the model's mask
    annotate(task, heavy, disk(24, 32, 7), use="edited")  # cut to half the radius: a correction
    consensus.fusion_run(label_class=dataset.label_classes.get())
    assert FusedLabel.objects.get(task=task).votes == 2  # the model (with the light edit) and the correction
    anchored = dict(
        AnnotatorReliability.objects.filter(annotator__in=[light, heavy]).values_list("annotator", "anchored")
    )
    assert anchored == {light.pk: 1, heavy.pk: 0}


def test_uncertain_labels_go_to_review_and_an_accepted_review_becomes_gold(alice, crowd):
    label_class, tasks, *_ = crowd
    split = tasks[6]
    Annotation.objects.filter(task=split).delete()
    annotate(split, UserFactory(), disk(24, 20, 8))
    annotate(split, UserFactory(), disk(24, 44, 8))
    consensus.fusion_run(label_class=label_class)
    fused = FusedLabel.objects.get(task=split)
    assert fused.review == FusedLabel.Review.NEEDED

    user_role_set(user=alice, role="researcher")
    client = Client()
    client.force_login(alice)
    page = client.get(f"/admin/annotations/fusedlabel/{fused.pk}/change/")
    assert page.status_code == 200 and b"use this mask as gold" in page.content
    for kind in ("fused", "uncertainty"):
        figure = client.get(f"/admin/annotations/fusedlabel/{fused.pk}/figure/{kind}.png")
        assert figure.status_code == 200 and figure.content.startswith(b"\x89PNG")
    one = Annotation.objects.filter(task=split).first()
    confirm = client.get(f"/admin/annotations/fusedlabel/{fused.pk}/use/{one.pk}/")
    assert confirm.status_code == 200 and not GoldStandard.objects.filter(task=split).exists()  # GET changes nothing
    accepted = client.post(
        "/admin/annotations/fusedlabel/", {"action": "accept_as_gold", "_selected_action": [fused.pk]}
    )
    assert accepted.status_code == 302
    gold = GoldStandard.objects.get(task=split)
    assert gold.source == GoldStandard.Source.REVIEW and gold.mask == fused.mask
    consensus.fusion_run(label_class=label_class)
    assert FusedLabel.objects.get(task=split).review == FusedLabel.Review.ACCEPTED  # the decision stands
    used = client.post(f"/admin/annotations/fusedlabel/{fused.pk}/use/{one.pk}/")
    assert used.status_code == 302
    assert GoldStandard.objects.get(task=split).mask == one.mask
    assert FusedLabel.objects.get(task=split).review == FusedLabel.Review.CORRECTED


def test_reliability_report_plots_and_csv_for_the_owner_only(alice, charlie, crowd):
    label_class, *_ = crowd
    consensus.fusion_run(label_class=label_class)
    user_role_set(user=alice, role="researcher")
    client = Client()
    client.force_login(alice)
    page = client.get("/admin/annotations/annotatorreliability/")
    assert page.status_code == 200 and b"agreement plot" in page.content
    for kind in ("histogram", "agreement"):
        plot = client.get(f"/admin/annotations/annotatorreliability/plot/{label_class.pk}/{kind}.png")
        assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    ids = list(AnnotatorReliability.objects.values_list("pk", flat=True))
    csv = client.post("/admin/annotations/annotatorreliability/", {"action": "download_csv", "_selected_action": ids})
    lines = csv.content.decode().splitlines()
    assert lines[0].startswith("dataset,label_class,rater") and len(lines) == 1 + len(ids)
    spammer = User.objects.get(pseudonym="empty-hands")
    assert rater_id(spammer.pk) in csv.content.decode()  # people by opaque rater id ...
    assert "empty-hands" not in csv.content.decode() and spammer.username not in csv.content.decode()  # ... only

    user_role_set(user=charlie, role="researcher")
    outsider = Client()
    outsider.force_login(charlie)
    assert (
        outsider.get(f"/admin/annotations/annotatorreliability/plot/{label_class.pk}/histogram.png").status_code == 404
    )


def test_fuse_command_reports_and_refuses_unknown_targets(crowd):
    label_class, *_ = crowd
    out = io.StringIO()
    call_command("fuse", "--dataset", label_class.dataset.name, stdout=out, stderr=io.StringIO())
    assert "8 images, 4 annotators" in out.getvalue() and "near zero" in out.getvalue()
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("fuse", "--campaign", "999", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.fixture
def scans(alice):
    """6 images whose pixels show a bright disk; on each, one careful annotator traces it and two
    biased ones draw it 3 px too wide: by votes alone the wide edge wins."""
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    rng = np.random.default_rng(5)
    careful, *biased = UserFactory.create_batch(3)
    tasks, truths = [], {}
    for i in range(6):
        cy, cx = rng.uniform(18, 30), rng.uniform(20, 44)
        truth = disk(cy, cx, 10)
        pixels = np.clip(90 + 80 * truth + rng.normal(0, 8, (H, W)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        PILImage.fromarray(pixels, mode="L").save(buf, format="PNG")
        image = services.images_import(dataset=dataset, sources=[services.BytesSource(f"scan-{i}.png", buf.getvalue())])
        task = image.created[0].tasks.get()
        annotate(task, careful, truth)
        for person in biased:
            annotate(task, person, disk(cy + rng.normal(0, 0.3), cx + rng.normal(0, 0.3), 13))
        tasks.append(task)
        truths[task.pk] = truth
    return dataset.label_classes.get(), tasks, truths


def test_the_image_under_the_masks_outweighs_a_biased_majority(scans):
    label_class, tasks, truths = scans
    images = consensus.fusion_images(label_class)
    assert all(im.intensity is not None and im.intensity.shape == (H, W) for im in images)
    votes_only = fusion.fuse([fusion.FusionImage(im.key, im.shape, im.votes) for im in images])
    assert np.mean([dice(votes_only.images[str(t.pk)].mask, truths[t.pk]) for t in tasks]) < 0.9

    consensus.fusion_run(label_class=label_class)
    for task in tasks:
        assert dice(rle.decode(FusedLabel.objects.get(task=task).mask), truths[task.pk]) > 0.95


def test_an_image_whose_model_input_is_gone_is_fused_from_its_votes(scans, caplog):
    label_class, tasks, truths = scans
    lost = tasks[0].image
    lost.model_input.storage.delete(lost.model_input.name)
    images = {im.key: im for im in consensus.fusion_images(label_class)}
    assert images[str(tasks[0].pk)].intensity is None and images[str(tasks[1].pk)].intensity is not None
    assert f"image {lost.pk}: model input unreadable" in caplog.text
    consensus.fusion_run(label_class=label_class)
    assert FusedLabel.objects.count() == len(tasks)
    # The others' images still teach everyone's rates, so its votes alone now follow the careful hand.
    for task in tasks:
        assert dice(rle.decode(FusedLabel.objects.get(task=task).mask), truths[task.pk]) > 0.95
