"""Research data names people by an opaque rater id only."""

import re

from accounts.services import rater_id


def test_rater_id_is_stable_opaque_and_distinct(settings):
    first = rater_id(7)
    assert re.fullmatch(r"r[0-9a-f]{12}", first)
    assert rater_id(7) == first
    assert len({rater_id(n) for n in range(1, 2001)}) == 2000


def test_rater_id_depends_on_the_secret(settings):
    before = rater_id(7)
    settings.SECRET_KEY = "another-secret-for-another-install-0123456789"
    assert rater_id(7) != before
