"""De-identification end to end: every pydicom test file through the import, searched in what
the service stored (database rows and files), not only in the parsed dataset. The canary corpus
(``test_deid_canaries``) does the same for every attribute of the dictionary."""

from __future__ import annotations

import base64
import json
import re

import pytest
from django.forms.models import model_to_dict

from annotations import services
from annotations.io import ImageReadError
from annotations.models import Image
from tests.annotations.test_dicom import (
    EXPECTED_REFUSALS,
    PIXEL_FILES,
    TEST_DIR,
    _deidentified,
    _parse,
    _sensitive_values,
)

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")]


def stored_bytes(image: Image) -> bytes:
    """Everything the service keeps about one image: its row as JSON and its files.

    Left out: ids and times, which differ from run to run, so that a short value of a dropped
    attribute (say "2097") cannot turn up in them by chance and make the test flaky.
    """
    exclude = ["display", "model_input", "original", "id", "created_at"]
    row = json.dumps(model_to_dict(image, exclude=exclude), default=str)
    parts = [row.encode()]
    for field in (image.display, image.model_input):
        with field.open("rb") as fh:
            parts.append(fh.read())
    return b"\n".join(parts)


@pytest.mark.parametrize("filename", PIXEL_FILES)
def test_no_dropped_value_survives_in_what_the_import_stores(filename, dataset):
    # A fixed secret: remapped UIDs and names are the same in every run, so is the verdict.
    dataset.uid_key = "0" * 64
    dataset.save()
    data = (TEST_DIR / filename).read_bytes()
    try:
        result = services.images_import(dataset=dataset, sources=[services.BytesSource(filename, data)])
    except ImageReadError:
        assert filename in EXPECTED_REFUSALS
        assert not Image.objects.exists()
        return
    texts, blobs = _sensitive_values(_parse(data), _deidentified(data))
    stored = b"".join(stored_bytes(image) for image in result.created)
    for text in texts:
        for encoding in ("utf-8", "latin-1", "utf-16-le"):
            needle = text.encode(encoding, errors="ignore")
            if len(needle) >= 4:
                assert needle not in stored, f"{text!r} survives in what was stored ({encoding})"
    for blob in blobs:
        assert blob not in stored and base64.b64encode(blob) not in stored
    assert all(re.fullmatch(r"dicom-[0-9a-f]{16}", image.source_name) for image in result.created)
