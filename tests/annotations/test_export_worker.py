"""An export through the task queue: a real Celery worker on the real stack, in-process eager
tasks in the embedded default; the API starts it and the zip downloads once the worker is done."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from accounts.services import user_role_set
from annotations import consensus
from annotations.models import Annotation
from inference.engine import rle
from tests.conftest import client_for, eventually
from tests.factories import DatasetFactory, UserFactory, image_import


@pytest.mark.django_db(transaction=True)
def test_an_export_runs_on_the_worker_and_downloads(alice, celery_tasks_run):
    user_role_set(user=alice, role="researcher")
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    people = UserFactory.create_batch(3)
    for seed in range(3):
        task = image_import(dataset, seed=seed).tasks.get()
        for k, person in enumerate(people):
            mask = np.zeros((48, 64), bool)
            mask[10 + k : 30, 12:40] = True
            Annotation.objects.create(
                task=task, annotator=person, mask=rle.encode(mask), area=int(mask.sum()), client_key=f"{seed}-{k}"
            )
    consensus.fusion_run(label_class=dataset.label_classes.get())
    client = client_for(alice)
    started = client.post(f"/api/v1/datasets/{dataset.pk}/exports", {"formats": ["coco", "nnunet"]}, format="json")
    assert started.status_code == 201, started.content
    url = f"/api/v1/exports/{started.json()['id']}"
    done = eventually(lambda: client.get(url).json()["status"] in ("done", "failed"), timeout=60)
    detail = client.get(url).json()
    assert done and detail["status"] == "done", detail["error"]
    download = client.get(detail["download"])
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as zf:
        assert "coco/annotations/fused.json" in zf.namelist() and "datacard.json" in zf.namelist()
