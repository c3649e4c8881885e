"""Every request rule of POST /images: accepted shapes, defaults, and each rejection."""

from __future__ import annotations

from typing import Any

import pytest

from flowgate.domain.captcha import validate_captcha_fields
from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import media_generation_id
from flowgate.domain.image_request import (
    PROMPT_MAX_LENGTH,
    ImageRequestSpec,
    check_reference_budget,
    parse_image_request,
    request_echo,
)


def image_id(
    media_id: str = "ff9aa5cc-1", user_id: int = 12345, email: str = "john@gmail.com"
) -> str:
    return media_generation_id(user_id, email, "image", media_id)


def video_id(media_id: str = "CAUSJabc") -> str:
    return media_generation_id(12345, "john@gmail.com", "video", media_id)


def rejected(data: dict[str, Any], *, form: bool = False) -> str:
    """The 400 message for ``data`` (fails the test if the request is accepted)."""
    with pytest.raises(InvalidRequest) as caught:
        parse_image_request(data, form=form)
    assert caught.value.status == 400
    return caught.value.message


# --------------------------------------------------------------------------- defaults


def test_text_only_defaults() -> None:
    spec = parse_image_request({"prompt": "A serene mountain landscape"})
    assert spec == ImageRequestSpec(
        prompt="A serene mountain landscape",
        model="imagen-4",
        aspect_ratio="16:9",
        count=4,
        seed=None,
        references=(),
        characters=(),
        email=None,
        reply_url=None,
        reply_ref=None,
    )
    assert not spec.has_references


def test_seed_000_example_body() -> None:
    spec = parse_image_request(
        {
            "prompt": "A serene mountain landscape at sunset with vibrant colors",
            "model": "imagen-4",
            "aspectRatio": "16:9",
            "count": 4,
            "seed": 123456,
        }
    )
    assert (spec.model, spec.aspect_ratio, spec.count, spec.seed) == ("imagen-4", "16:9", 4, 123456)


def test_references_select_nano_banana_2_and_auto() -> None:
    spec = parse_image_request({"prompt": "Make it modern", "reference_1": image_id()})
    assert spec.model == "nano-banana-2"
    assert spec.aspect_ratio == "auto"
    assert spec.has_references
    name, parsed = spec.references[0]
    assert name == "reference_1"
    assert (parsed.user_id, parsed.email, parsed.kind, parsed.media_id) == (
        12345,
        "john@gmail.com",
        "image",
        "ff9aa5cc-1",
    )


def test_imagen_4_image_to_image_defaults_to_16_9() -> None:
    spec = parse_image_request({"prompt": "p", "model": "imagen-4", "reference_1": image_id()})
    assert (spec.model, spec.aspect_ratio) == ("imagen-4", "16:9")


def test_nano_banana_text_to_image_defaults_to_16_9() -> None:
    spec = parse_image_request({"prompt": "p", "model": "nano-banana-pro"})
    assert spec.aspect_ratio == "16:9"


def test_characters_alone_select_nano_banana_2_with_fixed_ratio() -> None:
    # auto needs a reference_* image to measure, so characters alone keep 16:9.
    spec = parse_image_request({"prompt": "p", "character_1": "char-abc"})
    assert (spec.model, spec.aspect_ratio) == ("nano-banana-2", "16:9")
    assert spec.characters == (("character_1", "char-abc"),)
    assert spec.has_references


def test_legacy_alias_and_aspect_ratio_aliases() -> None:
    spec = parse_image_request({"prompt": "p", "model": "nano-banana", "aspectRatio": "portrait"})
    assert (spec.model, spec.aspect_ratio) == ("nano-banana-2", "9:16")
    assert parse_image_request({"prompt": "p", "aspectRatio": "landscape"}).aspect_ratio == "16:9"


@pytest.mark.parametrize("ratio", ["16:9", "4:3", "1:1", "3:4", "9:16"])
def test_every_fixed_ratio_is_accepted_on_every_model(ratio: str) -> None:
    for model in ("imagen-4", "nano-banana-2", "nano-banana-pro"):
        assert (
            parse_image_request({"prompt": "p", "model": model, "aspectRatio": ratio}).aspect_ratio
            == ratio
        )


def test_null_means_not_sent_in_json() -> None:
    spec = parse_image_request(
        {
            "prompt": "p",
            "model": None,
            "count": None,
            "seed": None,
            "email": None,
            "reference_1": None,
        }
    )
    assert (spec.model, spec.count, spec.seed, spec.email, spec.references) == (
        "imagen-4",
        4,
        None,
        None,
        (),
    )


def test_references_are_ordered_numerically_and_gaps_and_duplicates_allowed() -> None:
    first, second = image_id("aaa"), image_id("bbb")
    spec = parse_image_request(
        {"prompt": "p", "reference_10": first, "reference_2": second, "reference_3": second}
    )
    assert [name for name, _ in spec.references] == ["reference_2", "reference_3", "reference_10"]
    assert [ref.media_id for _, ref in spec.references] == ["bbb", "bbb", "aaa"]


def test_all_fields_accepted() -> None:
    spec = parse_image_request(
        {
            "prompt": "Put @character_1 next to @reference_1",
            "model": "nano-banana-pro",
            "aspectRatio": "1:1",
            "count": 2,
            "seed": 0,
            "reference_1": image_id(),
            "character_1": "char-1",
            "email": "john@gmail.com",
            "replyUrl": "https://example.com/hook?x=1",
            "replyRef": "order-42",
            "captchaRetry": 5,
        }
    )
    assert spec.seed == 0
    assert spec.email == "john@gmail.com"
    assert spec.reply_url == "https://example.com/hook?x=1"
    assert spec.reply_ref == "order-42"


# --------------------------------------------------------------------------- multipart


def test_multipart_strings_are_converted() -> None:
    spec = parse_image_request(
        {
            "prompt": "p",
            "model": "nano-banana-pro",
            "count": "2",
            "seed": "123456",
            "aspectRatio": "1:1",
            "captchaRetry": "3",
            "reference_1": image_id(),
        },
        form=True,
    )
    assert (spec.count, spec.seed) == (2, 123456)


def test_multipart_empty_fields_mean_not_sent() -> None:
    spec = parse_image_request(
        {
            "prompt": "p",
            "model": "",
            "count": "",
            "seed": "",
            "email": "",
            "reference_1": "",
            "captchaOrder": "",
        },
        form=True,
    )
    assert (spec.model, spec.count, spec.seed, spec.email, spec.references) == (
        "imagen-4",
        4,
        None,
        None,
        (),
    )


def test_multipart_rejects_bad_numbers_and_files() -> None:
    assert "count must be an integer from 1 to 4" in rejected(
        {"prompt": "p", "count": "two"}, form=True
    )
    assert "count must be an integer" in rejected({"prompt": "p", "count": "2.5"}, form=True)
    assert "seed must be an integer" in rejected({"prompt": "p", "seed": "-1"}, form=True)
    message = rejected({"prompt": "p", "email": b"john@gmail.com"}, form=True)
    assert "email must be a text field" in message


def test_json_is_strict_about_number_types() -> None:
    message = rejected({"prompt": "p", "count": "2"})
    assert "count must be an integer from 1 to 4" in message
    assert "JSON number" in message
    assert "seed" in rejected({"prompt": "p", "seed": "42"})
    assert "count" in rejected({"prompt": "p", "count": True})
    assert "count" in rejected({"prompt": "p", "count": 2.5})
    # An integral float is the same number.
    assert parse_image_request({"prompt": "p", "count": 2.0}).count == 2


# --------------------------------------------------------------------------- rejections


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_image_request(["prompt"])  # type: ignore[arg-type]


@pytest.mark.parametrize("prompt", [None, "", "   ", "\n"])
def test_prompt_is_required(prompt: Any) -> None:
    body = {} if prompt is None else {"prompt": prompt}
    assert "prompt is required" in rejected(body)


def test_prompt_must_be_a_string_and_not_too_long() -> None:
    assert "prompt must be a string" in rejected({"prompt": 42})
    assert (
        parse_image_request({"prompt": "x" * PROMPT_MAX_LENGTH}).prompt == "x" * PROMPT_MAX_LENGTH
    )
    message = rejected({"prompt": "x" * (PROMPT_MAX_LENGTH + 1)})
    assert "prompt" in message and str(PROMPT_MAX_LENGTH) in message


def test_unknown_model() -> None:
    message = rejected({"prompt": "p", "model": "midjourney"})
    assert "model 'midjourney' is not supported" in message
    assert "nano-banana-pro" in message


def test_unknown_aspect_ratio() -> None:
    message = rejected({"prompt": "p", "aspectRatio": "21:9"})
    assert message.startswith("aspectRatio '21:9' is not supported")
    assert "16:9" in message


def test_auto_needs_a_nano_banana_model() -> None:
    message = rejected(
        {"prompt": "p", "model": "imagen-4", "aspectRatio": "auto", "reference_1": image_id()}
    )
    assert "aspectRatio 'auto' is not available with imagen-4" in message
    assert "16:9" in message


def test_auto_needs_a_reference() -> None:
    message = rejected({"prompt": "p", "model": "nano-banana-2", "aspectRatio": "auto"})
    assert "aspectRatio 'auto' needs at least one reference_*" in message
    # characters alone do not provide a first reference image either
    assert "aspectRatio 'auto'" in rejected(
        {"prompt": "p", "aspectRatio": "auto", "character_1": "c"}
    )


def test_auto_with_reference_on_nano_banana_pro() -> None:
    spec = parse_image_request(
        {
            "prompt": "p",
            "model": "nano-banana-pro",
            "aspectRatio": "auto",
            "reference_1": image_id(),
        }
    )
    assert spec.aspect_ratio == "auto"


@pytest.mark.parametrize("count", [0, 5, -1, 100])
def test_count_range(count: int) -> None:
    message = rejected({"prompt": "p", "count": count})
    assert f"count must be an integer from 1 to 4 (default 4); got {count}" in message


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_count_accepted(count: int) -> None:
    assert parse_image_request({"prompt": "p", "count": count}).count == count


@pytest.mark.parametrize("seed", [-1, 2**31, 10**12])
def test_seed_range(seed: int) -> None:
    message = rejected({"prompt": "p", "seed": seed})
    # No default to name: a seed left out is drawn at random.
    assert f"seed must be an integer from 0 to 2147483647; got {seed}" in message


def test_seed_upper_bound_accepted() -> None:
    assert parse_image_request({"prompt": "p", "seed": 2**31 - 1}).seed == 2**31 - 1


def test_seed_must_be_an_integer() -> None:
    assert "seed must be an integer" in rejected({"prompt": "p", "seed": "random"})


@pytest.mark.parametrize("name", ["reference_0", "reference_11", "reference_01"])
def test_reference_slots_are_1_to_10(name: str) -> None:
    message = rejected({"prompt": "p", name: image_id()})
    assert name in message
    assert "reference_1 to reference_10" in message


@pytest.mark.parametrize("name", ["character_0", "character_8"])
def test_character_slots_are_1_to_7(name: str) -> None:
    message = rejected({"prompt": "p", name: "c"})
    assert name in message
    assert "character_1 to character_7" in message


def test_reference_must_be_a_media_generation_id() -> None:
    message = rejected({"prompt": "p", "reference_2": "./reference_image.jpeg"})
    assert message.startswith("reference_2 must be a mediaGenerationId")


def test_reference_must_be_an_image() -> None:
    message = rejected({"prompt": "p", "reference_1": video_id()})
    assert "reference_1 is a video mediaGenerationId" in message
    assert "image id" in message


def test_reference_must_be_a_string() -> None:
    assert "reference_1 must be a string" in rejected({"prompt": "p", "reference_1": 7})


@pytest.mark.parametrize("value", ["", "has space", "x" * 257, 12])
def test_character_id_rules(value: Any) -> None:
    message = rejected({"prompt": "p", "character_3": value})
    assert "character_3" in message


def test_imagen_4_takes_at_most_three_references() -> None:
    body = {"prompt": "p", "model": "imagen-4"} | {
        f"reference_{n}": image_id(str(n)) for n in range(1, 5)
    }
    message = rejected(body)
    assert message.startswith("reference count exceeded: imagen-4 takes at most 3")
    assert "this request has 4" in message
    assert "nano-banana-2" in message  # the advice names a model that takes more
    body.pop("reference_4")
    assert len(parse_image_request(body).references) == 3


def test_characters_share_the_reference_budget() -> None:
    body = {
        "prompt": "p",
        "model": "imagen-4",
        "reference_1": image_id(),
        "reference_2": image_id(),
    }
    body |= {"character_1": "a", "character_2": "b"}
    message = rejected(body)
    assert "reference count exceeded" in message
    assert "(2 reference_*, 2 from character_*)" in message


def test_nano_banana_budget_is_ten() -> None:
    refs = {f"reference_{n}": image_id(str(n)) for n in range(1, 11)}
    assert len(parse_image_request({"prompt": "p"} | refs).references) == 10
    message = rejected({"prompt": "p", "character_1": "c"} | refs)
    assert "nano-banana-2 takes at most 10" in message


def test_check_reference_budget_with_real_character_image_counts() -> None:
    check_reference_budget("nano-banana-pro", 6, 4)
    with pytest.raises(InvalidRequest, match=r"nano-banana-pro takes at most 10.*has 11"):
        check_reference_budget("nano-banana-pro", 7, 4)
    with pytest.raises(InvalidRequest, match="imagen-4 takes at most 3"):
        check_reference_budget("imagen-4", 1, 3)


def test_inline_markers_need_their_parameters() -> None:
    message = rejected({"prompt": "Put @reference_2 on the left", "reference_1": image_id()})
    assert "@reference_2" in message and "send reference_2" in message
    message = rejected({"prompt": "@character_1 waves", "reference_1": image_id()})
    assert "@character_1" in message
    # With the parameters present the markers are fine; an email-like text is not a marker.
    parse_image_request({"prompt": "@reference_1 by me@reference_5.com", "reference_1": image_id()})


def test_marker_numbers_are_read_whole() -> None:
    refs = {f"reference_{n}": image_id(str(n)) for n in range(1, 10)}
    message = rejected({"prompt": "look at @reference_10", "model": "nano-banana-pro"} | refs)
    assert "@reference_10" in message


def test_unknown_parameters_are_listed_with_suggestions() -> None:
    message = rejected({"prompt": "p", "aspect_ratio": "1:1", "num_images": 2, "foo": 1})
    assert message.startswith("Unknown parameter(s): ")
    assert "aspect_ratio (did you mean aspectRatio?)" in message
    assert "num_images (did you mean count?)" in message
    assert "foo" in message
    assert "POST /images accepts: prompt, model, aspectRatio" in message


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Prompt", "prompt"),
        ("reply_url", "replyUrl"),
        ("callback_url", "replyUrl"),
        ("reference1", "reference_1"),
        ("ref_3", "reference_3"),
        ("Reference_2", "reference_2"),
        ("char_2", "character_2"),
        ("captcha_retry", "captchaRetry"),
    ],
)
def test_unknown_parameter_suggestions(name: str, suggestion: str) -> None:
    body = {"prompt": "p", name: "x"} if name != "Prompt" else {name: "x"}
    assert f"{name} (did you mean {suggestion}?)" in rejected(body)


def test_parameters_of_other_apis_get_advice() -> None:
    assert "synchronous" in rejected({"prompt": "p", "async": True})
    assert "POST /images/upscale" in rejected({"prompt": "p", "resolution": "4k"})


def test_email_rules() -> None:
    assert "email must be the email address" in rejected({"prompt": "p", "email": "john"})
    assert "email" in rejected({"prompt": "p", "email": "john doe@gmail.com"})
    assert "email must be a string" in rejected({"prompt": "p", "email": ["john@gmail.com"]})
    assert "email" in rejected({"prompt": "p", "email": ""})


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "example.com/hook",
        "/relative",
        "https://",
        "http://exa mple.com",
        "https://h:99999/",
    ],
)
def test_reply_url_must_be_absolute_http(url: str) -> None:
    assert "replyUrl must be an absolute http(s) URL" in rejected({"prompt": "p", "replyUrl": url})


def test_reply_url_accepts_http_with_port() -> None:
    assert parse_image_request({"prompt": "p", "replyUrl": "http://127.0.0.1:9000/cb"}).reply_url


def test_reply_ref_rules() -> None:
    assert parse_image_request({"prompt": "p", "replyRef": "x" * 1024}).reply_ref == "x" * 1024
    assert "replyRef is 1025 characters long" in rejected({"prompt": "p", "replyRef": "x" * 1025})
    assert "replyRef must be a string" in rejected({"prompt": "p", "replyRef": {"id": 1}})


# --------------------------------------------------------------------------- captcha


def test_captcha_fields_are_mutually_exclusive() -> None:
    message = rejected({"prompt": "p", "captchaRetry": 3, "captchaOrder": "EzCaptcha"})
    assert "captchaRetry and captchaOrder are mutually exclusive" in message
    message = rejected({"prompt": "p", "captchaToken": "t", "captchaRetry": 3})
    assert "captchaToken and captchaRetry" in message


@pytest.mark.parametrize("retry", [0, 11, "3", 2.5, True])
def test_captcha_retry_range_and_type(retry: Any) -> None:
    assert "captchaRetry must be an integer from 1 to 10" in rejected(
        {"prompt": "p", "captchaRetry": retry}
    )


def test_captcha_order_rules() -> None:
    parse_image_request({"prompt": "p", "captchaOrder": "EzCaptcha,EzCaptcha, capsolver,2Captcha"})
    assert "unknown provider(s): Foo" in rejected({"prompt": "p", "captchaOrder": "EzCaptcha,Foo"})
    assert "at most 10" in rejected({"prompt": "p", "captchaOrder": ",".join(["CapSolver"] * 11)})
    assert "empty entry" in rejected({"prompt": "p", "captchaOrder": "CapSolver,,EzCaptcha"})
    assert "captchaOrder must be a comma-separated string" in rejected(
        {"prompt": "p", "captchaOrder": ["CapSolver"]}
    )


def test_captcha_token_rules() -> None:
    parse_image_request({"prompt": "p", "captchaToken": "03AFcWeA"})
    assert "captchaToken must be a non-empty string" in rejected(
        {"prompt": "p", "captchaToken": ""}
    )
    assert "captchaToken must be a non-empty string" in rejected({"prompt": "p", "captchaToken": 5})


def test_validate_captcha_fields_directly() -> None:
    validate_captcha_fields({})
    validate_captcha_fields({"captchaRetry": "10"}, form=True)
    with pytest.raises(InvalidRequest, match="captchaRetry"):
        validate_captcha_fields({"captchaRetry": "10"})


# --------------------------------------------------------------------------- echo


def test_request_echo() -> None:
    reference = image_id("ff9aa5cc-1")
    spec = parse_image_request(
        {
            "prompt": "p",
            "aspectRatio": "portrait",
            "reference_2": reference,
            "character_1": "char-1",
            "email": "john@gmail.com",
            "replyUrl": "https://example.com/cb",
            "replyRef": "r1",
            "seed": 7,
            "captchaRetry": 3,
        }
    )
    assert request_echo(spec) == {
        "prompt": "p",
        "model": "nano-banana-2",
        "aspectRatio": "9:16",
        "count": 4,
        "seed": 7,
        "email": "jo***@gmail.com",
        "reference_2": reference,
        "character_1": "char-1",
        "replyUrl": "https://example.com/cb",
        "replyRef": "r1",
    }


def test_request_echo_omits_absent_fields() -> None:
    assert request_echo(parse_image_request({"prompt": "p"})) == {
        "prompt": "p",
        "model": "imagen-4",
        "aspectRatio": "16:9",
        "count": 4,
    }
