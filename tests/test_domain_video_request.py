"""Request rules of POST /videos (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import media_generation_id
from flowgate.domain.video_request import parse_video_request, video_request_echo
from flowgate.domain.video_tools_request import (
    parse_concat_request,
    parse_extend_request,
    parse_gif_request,
    parse_video_upscale_request,
)


def image_id(
    media_id: str = "ff9aa5cc-1", user_id: int = 12345, email: str = "john@gmail.com"
) -> str:
    return media_generation_id(user_id, email, "image", media_id)


def video_id(media_id: str = "CAUSJ1", user_id: int = 12345, email: str = "john@gmail.com") -> str:
    return media_generation_id(user_id, email, "video", media_id)


def video_rejected(data: dict[str, Any], *, form: bool = False) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse_video_request(data, form=form)
    return caught.value.message


def test_video_defaults_and_modes() -> None:
    spec = parse_video_request({"prompt": "a cat surfing"})
    assert (spec.model, spec.aspect_ratio, spec.count, spec.mode, spec.async_mode) == (
        "veo-3.1-fast",
        "landscape",
        1,
        "t2v",
        False,
    )
    assert parse_video_request({"prompt": "p", "startImage": image_id()}).mode == "i2v"
    both = parse_video_request(
        {"prompt": "p", "startImage": image_id("a"), "endImage": image_id("b")}
    )
    assert both.mode == "i2v_fl"
    r2v = parse_video_request(
        {"prompt": "p", "referenceImage_3": image_id(), "referenceImage_1": image_id()}
    )
    assert r2v.mode == "r2v"
    assert [name for name, _ in r2v.reference_images] == ["referenceImage_1", "referenceImage_3"]


def test_video_multipart_and_aliases() -> None:
    spec = parse_video_request(
        {
            "prompt": "p",
            "model": "veo-3.1-lite",
            "aspectRatio": "9:16",
            "count": "2",
            "async": "true",
        },
        form=True,
    )
    assert (spec.model, spec.aspect_ratio, spec.count, spec.async_mode) == (
        "veo-3.1-lite",
        "portrait",
        2,
        True,
    )
    assert "async must be a boolean" in video_rejected({"prompt": "p", "async": "true"})


def test_video_rejections() -> None:
    assert "endImage needs startImage" in video_rejected({"prompt": "p", "endImage": image_id()})
    assert "cannot be combined" in video_rejected(
        {"prompt": "p", "startImage": image_id(), "referenceImage_1": image_id()}
    )
    assert "startImage is a video mediaGenerationId" in video_rejected(
        {"prompt": "p", "startImage": video_id()}
    )
    assert "referenceImage_1 to referenceImage_3" in video_rejected(
        {"prompt": "p", "referenceImage_4": image_id()}
    )
    assert "count must be an integer from 1 to 4 (default 1); got 5" in video_rejected(
        {"prompt": "p", "count": 5}
    )
    assert "seed must be an integer from 0 to 2147483647; got -1" in video_rejected(
        {"prompt": "p", "seed": -1}
    )
    assert "image model" in video_rejected({"prompt": "p", "model": "imagen-4"})
    assert "Veo 3.1 renders landscape" in video_rejected({"prompt": "p", "aspectRatio": "square"})
    assert "prompt is required" in video_rejected({"model": "veo-3.1-fast"})
    assert "first_frame (did you mean startImage?)" in video_rejected(
        {"prompt": "p", "first_frame": image_id()}
    )


def test_video_request_echo() -> None:
    start = image_id("s1")
    spec = parse_video_request(
        {"prompt": "p", "startImage": start, "async": True, "email": "john@gmail.com", "seed": 3}
    )
    assert video_request_echo(spec) == {
        "async": True,
        "prompt": "p",
        "model": "veo-3.1-fast",
        "aspectRatio": "landscape",
        "count": 1,
        "duration": 8,
        "seed": 3,
        "email": "jo***@gmail.com",
        "startImage": start,
    }


def test_video_duration_rules() -> None:
    assert parse_video_request({"prompt": "p"}).duration == 8
    assert parse_video_request({"prompt": "p", "duration": 4}).duration == 4
    assert parse_video_request({"prompt": "p", "duration": "6"}, form=True).duration == 6
    assert "duration" in video_rejected({"prompt": "p", "duration": 5})
    assert "duration must be an integer from 4 to 8 (default 8); got 10" in video_rejected(
        {"prompt": "p", "duration": 10}
    )
    refs = {"referenceImage_1": image_id("r1"), "duration": 4}
    assert "duration must be 8" in video_rejected({"prompt": "p", **refs})


def test_extend_count_and_seed() -> None:
    source = {"mediaGenerationId": video_id(), "prompt": "and then"}
    spec = parse_extend_request(source)
    assert (spec.count, spec.seed) == (1, None)
    form = parse_extend_request({**source, "count": "2", "seed": ""}, form=True)
    assert (form.count, form.seed) == (2, None)  # an empty multipart field is not sent
    with pytest.raises(InvalidRequest) as caught:
        parse_extend_request({**source, "count": 5})
    assert "count must be an integer from 1 to 4 (default 1); got 5" in caught.value.message
    with pytest.raises(InvalidRequest) as caught:
        parse_extend_request({**source, "seed": "7"})
    assert "send it as a JSON number (7), not a string" in caught.value.message


def test_concat_trim_of_a_huge_integer_is_a_400() -> None:
    # Found by review next to the fuzzer: float() of a 309-digit JSON integer overflowed (500).
    huge = json.loads("1" + "0" * 400)
    media = [
        {"mediaGenerationId": video_id(), "trimStart": huge},
        {"mediaGenerationId": video_id()},
    ]
    with pytest.raises(InvalidRequest) as caught:
        parse_concat_request({"media": media})
    assert caught.value.message == (
        "media[0].trimStart must be from 0 to 8 seconds, got a number far out of range"
    )
    with pytest.raises(InvalidRequest) as caught:
        parse_concat_request({"media": [{**media[1], "trimEnd": float("nan")}, media[1]]})
    assert "media[0].trimEnd must be from 0 to 8 seconds, got nan" in caught.value.message
    spec = parse_concat_request({"media": [{**media[1], "trimEnd": 8}, media[1]]})
    assert spec.items[0].trim_end == 8.0


def test_media_id_with_a_user_id_too_long_for_int_is_a_400() -> None:
    # int() refuses more than 4,300 digits with a ValueError: was a 500 on every video route.
    too_long = f"user:{'1' * 5000}-email:-video:CAUSJ1"
    for parse in (
        lambda: parse_gif_request({"mediaGenerationId": too_long}),
        lambda: parse_video_upscale_request({"mediaGenerationId": too_long}),
        lambda: parse_concat_request({"media": [{"mediaGenerationId": too_long}] * 2}),
        lambda: parse_video_request({"prompt": "p", "startImage": too_long}),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse()
        assert "must be a mediaGenerationId like 'user:{uid}-email:{hex}-image:{id}'" in (
            caught.value.message
        )
