"""Job and media ids: what parses, and what is a clear 400 instead of a crash."""

from __future__ import annotations

import pytest

from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import new_job_id, parse_job_id


def test_a_new_job_id_parses_back() -> None:
    parsed = parse_job_id(new_job_id("video", 42, "john@gmail.com"))
    assert (parsed.kind, parsed.user_id) == ("video", 42)


@pytest.mark.parametrize(
    "job_id",
    [
        # int() refuses more than 4,300 digits with a ValueError: was a 500.
        f"j1733500000000123456i-u{'1' * 5000}-email:jo***@gmail.com-bot:google-flow",
        # Digits of other scripts are digits to \\d and to int(), not to a job id.
        "j1733500000000123456i-u\u0661\u0662-email:jo***@gmail.com-bot:google-flow",
    ],
    ids=["user id of 5000 digits", "arabic-indic digits"],
)
def test_malformed_job_ids_are_a_400(job_id: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_job_id(job_id)
    assert caught.value.message == "Invalid job ID format"
