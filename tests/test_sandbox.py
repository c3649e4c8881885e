"""The sandbox upstream over real HTTP: Google's shapes, pictures, directives, keys, call log."""

from __future__ import annotations

import base64
import io
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from flowgate.sandbox import SandboxConfig, create_sandbox_app
from flowgate.sandbox.catalogue import SANDBOX_MODELS
from tests.fixtures_sandbox import sandbox_url  # noqa: F401

KEY = {"x-goog-api-key": "test-key"}
NANO_25 = "gemini-2.5-flash-image"
NANO_2 = "gemini-3.1-flash-image-preview"
NANO_PRO = "gemini-3-pro-image-preview"
IMAGEN = "imagen-4.0-generate-001"
ALL_MODEL_IDS = {
    "gemini-2.5-flash-image",
    "gemini-3.1-flash-image-preview",
    "gemini-3.1-flash-image",
    "gemini-3-pro-image-preview",
    "imagen-4.0-generate-001",
    "imagen-4.0-ultra-generate-001",
    "imagen-4.0-fast-generate-001",
    "veo-3.1-generate-preview",
    "veo-3.1-fast-generate-preview",
    "veo-3.1-lite-generate-preview",
}
RATE_LIMITS_HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}


@pytest.fixture(scope="module")
def client(sandbox_url: str) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=sandbox_url, timeout=60.0, trust_env=False) as http:
        yield http


def content_body(
    prompt: str,
    *,
    seed: int | None = None,
    aspect_ratio: str | None = None,
    image_size: str | None = None,
    references: tuple[bytes, ...] = (),
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": prompt}]
    parts += [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(ref).decode()}}
        for ref in references
    ]
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if seed is not None:
        config["seed"] = seed
    image_config = {}
    if aspect_ratio:
        image_config["aspectRatio"] = aspect_ratio
    if image_size:
        image_config["imageSize"] = image_size
    if image_config:
        config["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def generate(client: httpx.Client, model: str, body: Any, key: str = "test-key") -> httpx.Response:
    return client.post(
        f"/v1beta/models/{model}:generateContent", json=body, headers={"x-goog-api-key": key}
    )


def predict(client: httpx.Client, model: str, body: Any) -> httpx.Response:
    return client.post(f"/v1beta/models/{model}:predict", json=body, headers=KEY)


def final_image(response: httpx.Response) -> bytes:
    parts = response.json()["candidates"][0]["content"]["parts"]
    images = [p for p in parts if "inlineData" in p and not p.get("thought")]
    assert len(images) == 1
    assert images[0]["inlineData"]["mimeType"] == "image/png"
    return base64.b64decode(images[0]["inlineData"]["data"])


def png_of_size(width: int, height: int, colour: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


# --- models -----------------------------------------------------------------------------


def test_list_models_pages_through_every_known_model(client: httpx.Client) -> None:
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"pageSize": "3"} | ({"pageToken": token} if token else {})
        response = client.get("/v1beta/models", params=params, headers=KEY)
        assert response.status_code == 200
        assert response.headers["x-flowgate-sandbox"] == "1"
        body = response.json()
        assert len(body["models"]) <= 3
        for model in body["models"]:
            assert model["name"].startswith("models/")
            assert model["displayName"]
            assert model["supportedGenerationMethods"]
            seen.append(model["name"].removeprefix("models/"))
        pages += 1
        token = body.get("nextPageToken")
        if not token:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 10
    assert set(seen) == ALL_MODEL_IDS


def test_list_models_methods_match_the_model_family(client: httpx.Client) -> None:
    body = client.get("/v1beta/models", headers=KEY).json()
    methods = {m["name"]: m["supportedGenerationMethods"] for m in body["models"]}
    assert "nextPageToken" not in body
    assert methods["models/gemini-3-pro-image-preview"] == ["generateContent"]
    assert methods["models/imagen-4.0-fast-generate-001"] == ["predict"]
    assert methods["models/veo-3.1-lite-generate-preview"] == ["predictLongRunning"]


def test_list_models_rejects_a_bad_page_token(client: httpx.Client) -> None:
    response = client.get("/v1beta/models", params={"pageToken": "garbage!"}, headers=KEY)
    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"


def test_get_model_and_unknown_model(client: httpx.Client) -> None:
    response = client.get(f"/v1beta/models/{NANO_PRO}", headers=KEY)
    assert response.status_code == 200
    assert response.json()["name"] == f"models/{NANO_PRO}"

    missing = client.get("/v1beta/models/gemini-9-ultra", headers=KEY)
    assert missing.status_code == 404
    assert error_of(missing) == {
        "code": 404,
        "message": "models/gemini-9-ultra is not found for API version v1beta.",
        "status": "NOT_FOUND",
    }


def test_generate_on_unknown_model_is_google_404(client: httpx.Client) -> None:
    response = generate(client, "gemini-9-ultra", content_body("cat"))
    assert response.status_code == 404
    assert error_of(response) == {
        "code": 404,
        "message": "models/gemini-9-ultra is not found for API version v1beta, or is not "
        "supported for generateContent. Call ListModels to see the list of available models "
        "and their supported methods.",
        "status": "NOT_FOUND",
    }


def test_wrong_method_for_model_is_400(client: httpx.Client) -> None:
    response = predict(client, NANO_PRO, {"instances": [{"prompt": "cat"}]})
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(f"models/{NANO_PRO} does not support predict.")

    response = generate(client, IMAGEN, content_body("cat"))
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(f"models/{IMAGEN} does not support")


def test_unknown_action_and_unknown_path_are_404(client: httpx.Client) -> None:
    response = client.post(f"/v1beta/models/{NANO_PRO}:doMagic", json={}, headers=KEY)
    assert response.status_code == 404
    assert error_of(response)["status"] == "NOT_FOUND"
    response = client.get("/v2/everything", headers=KEY)
    assert response.status_code == 404
    assert error_of(response) == {
        "code": 404,
        "message": "Method not found.",
        "status": "NOT_FOUND",
    }
    assert response.headers["x-flowgate-sandbox"] == "1"


# --- generateContent --------------------------------------------------------------------


def test_generate_content_response_shape_for_gemini_25(client: httpx.Client) -> None:
    response = generate(client, NANO_25, content_body("a lighthouse", seed=7))
    assert response.status_code == 200
    assert response.headers["x-flowgate-sandbox"] == "1"
    body = response.json()
    assert set(body) == {"candidates", "usageMetadata", "modelVersion", "responseId"}
    assert body["modelVersion"] == NANO_25
    assert len(body["responseId"]) == 22
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["index"] == 0
    assert candidate["content"]["role"] == "model"
    parts = candidate["content"]["parts"]
    assert not any(part.get("thought") for part in parts)
    assert parts[0] == {"text": "Here is the sandbox picture you asked for."}
    assert size_of(final_image(response)) == (1024, 1024)
    usage = body["usageMetadata"]
    assert usage["candidatesTokenCount"] == 1290
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + 1290


def test_gemini_3_sends_thought_parts_before_the_image(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("a lighthouse", seed=7, image_size="2K"))
    assert response.status_code == 200
    parts = response.json()["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True
    assert "thinking" in parts[0]["text"]
    assert parts[1]["thought"] is True
    draft = base64.b64decode(parts[1]["inlineData"]["data"])
    assert size_of(draft) == (256, 256)
    assert "thought" not in parts[-1]
    assert parts[-1]["thoughtSignature"]
    assert size_of(final_image(response)) == (2048, 2048)


def test_same_inputs_give_the_same_bytes(client: httpx.Client) -> None:
    body = content_body("a red bicycle", seed=11, aspect_ratio="3:2")
    first = final_image(generate(client, NANO_2, body))
    second = final_image(generate(client, NANO_2, body))
    assert first == second


def test_seed_prompt_and_model_change_the_picture(client: httpx.Client) -> None:
    base = final_image(generate(client, NANO_2, content_body("a red bicycle", seed=11)))
    other_seed = final_image(generate(client, NANO_2, content_body("a red bicycle", seed=12)))
    other_prompt = final_image(generate(client, NANO_2, content_body("a blue bicycle", seed=11)))
    other_model = final_image(generate(client, NANO_PRO, content_body("a red bicycle", seed=11)))
    assert len({base, other_seed, other_prompt, other_model}) == 4
    # Visibly different: the pixels differ a lot, not just the caption.
    with Image.open(io.BytesIO(base)) as a, Image.open(io.BytesIO(other_seed)) as b:
        a_pixels = a.convert("RGB").resize((32, 32)).tobytes()
        b_pixels = b.convert("RGB").resize((32, 32)).tobytes()
    mean_difference = sum(abs(x - y) for x, y in zip(a_pixels, b_pixels, strict=True)) / len(
        a_pixels
    )
    assert mean_difference > 10


@pytest.mark.parametrize(
    ("model", "aspect_ratio", "image_size", "expected"),
    [
        (NANO_25, None, None, (1024, 1024)),
        (NANO_25, "21:9", None, (1024, 438)),
        (NANO_25, "3:4", "1K", (768, 1024)),
        (NANO_PRO, "16:9", "2K", (2048, 1152)),
        (NANO_PRO, "4:5", "4K", (3276, 4096)),
        (NANO_2, "8:1", "512", (512, 64)),
        (NANO_2, "9:16", "1K", (576, 1024)),
        ("gemini-3.1-flash-image", "1:4", "2K", (512, 2048)),
    ],
)
def test_aspect_ratio_and_image_size_set_the_pixels(
    client: httpx.Client,
    model: str,
    aspect_ratio: str | None,
    image_size: str | None,
    expected: tuple[int, int],
) -> None:
    body = content_body("sizes", seed=1, aspect_ratio=aspect_ratio, image_size=image_size)
    response = generate(client, model, body)
    assert response.status_code == 200, response.text
    assert size_of(final_image(response)) == expected


def test_without_aspect_ratio_the_first_reference_decides(client: httpx.Client) -> None:
    wide, tall = png_of_size(300, 200), png_of_size(100, 400)
    response = generate(client, NANO_PRO, content_body("edit", seed=1, references=(wide, tall)))
    assert response.status_code == 200
    assert size_of(final_image(response)) == (1024, 682)

    response = generate(
        client, NANO_PRO, content_body("edit", seed=1, image_size="2K", references=(tall, wide))
    )
    assert size_of(final_image(response)) == (512, 2048)

    # An explicit ratio wins over the reference.
    response = generate(
        client, NANO_PRO, content_body("edit", seed=1, aspect_ratio="1:1", references=(wide,))
    )
    assert size_of(final_image(response)) == (1024, 1024)


def test_references_change_the_picture(client: httpx.Client) -> None:
    green = png_of_size(64, 64, (0, 255, 0))
    red = png_of_size(64, 64, (255, 0, 0))
    one = final_image(generate(client, NANO_PRO, content_body("x", seed=1, references=(green,))))
    two = final_image(generate(client, NANO_PRO, content_body("x", seed=1, references=(red,))))
    assert one != two


def test_snake_case_body_is_accepted(client: httpx.Client) -> None:
    reference = base64.b64encode(png_of_size(200, 100)).decode()
    body = {
        "contents": [
            {
                "parts": [
                    {"text": "snake"},
                    {"inline_data": {"mime_type": "image/png", "data": reference}},
                ]
            }
        ],
        "generation_config": {
            "response_modalities": ["TEXT", "IMAGE"],
            "seed": 3,
            "image_config": {"image_size": "2K"},
        },
    }
    response = generate(client, NANO_PRO, body)
    assert response.status_code == 200, response.text
    assert size_of(final_image(response)) == (2048, 1024)

    body["generation_config"]["image_config"] = {"aspect_ratio": "9:16"}  # type: ignore[index]
    assert size_of(final_image(generate(client, NANO_PRO, body))) == (576, 1024)


def test_invalid_aspect_ratio_is_google_400(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x", aspect_ratio="7:3"))
    assert response.status_code == 400
    assert error_of(response) == {
        "code": 400,
        "message": "* GenerateContentRequest.generation_config.image_config.aspect_ratio: "
        "aspect_ratio must be one of '1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', "
        "'16:9', or '21:9'.\n",
        "status": "INVALID_ARGUMENT",
    }
    # 1:8 exists only on 3.1 Flash.
    assert generate(client, NANO_PRO, content_body("x", aspect_ratio="1:8")).status_code == 400
    assert generate(client, NANO_2, content_body("x", aspect_ratio="1:8")).status_code == 200


@pytest.mark.parametrize(
    ("model", "image_size"),
    [(NANO_PRO, "1k"), (NANO_PRO, "512"), (NANO_PRO, "8K"), (NANO_25, "2K")],
)
def test_invalid_image_size_is_google_400(
    client: httpx.Client, model: str, image_size: str
) -> None:
    response = generate(client, model, content_body("x", image_size=image_size))
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(
        "* GenerateContentRequest.generation_config.image_config.image_size: "
        "image_size must be one of '"
    )


def test_missing_contents_is_google_400(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, {"generationConfig": {"seed": 1}})
    assert response.status_code == 400
    assert error_of(response) == {
        "code": 400,
        "message": "* GenerateContentRequest.contents: contents is not specified\n",
        "status": "INVALID_ARGUMENT",
    }


def test_bad_bodies_are_400(client: httpx.Client) -> None:
    not_json = client.post(
        f"/v1beta/models/{NANO_PRO}:generateContent",
        content=b"{nope",
        headers={**KEY, "content-type": "application/json"},
    )
    assert not_json.status_code == 400
    assert error_of(not_json)["message"].startswith("Invalid JSON payload received.")

    vertex_field = content_body("x")
    vertex_field["generationConfig"]["imageConfig"] = {"personGeneration": "allow_all"}
    response = generate(client, NANO_PRO, vertex_field)
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        'Invalid JSON payload received. Unknown name "personGeneration" at '
        "'generation_config.image_config': Cannot find field."
    )

    bad_seed = content_body("x")
    bad_seed["generationConfig"]["seed"] = "twelve"
    assert generate(client, NANO_PRO, bad_seed).status_code == 400


def test_undecodable_reference_is_400(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x", references=(b"not an image",)))
    assert response.status_code == 400
    assert error_of(response) == {
        "code": 400,
        "message": "Unable to process input image. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
        "status": "INVALID_ARGUMENT",
    }
    body = content_body("x")
    body["contents"][0]["parts"].append({"inlineData": {"mimeType": "image/png", "data": "@@@"}})
    response = generate(client, NANO_PRO, body)
    assert response.status_code == 400
    assert "Base64 decoding failed" in error_of(response)["message"]


def test_reference_limits_follow_the_model(client: httpx.Client) -> None:
    small = png_of_size(16, 16)
    assert generate(client, NANO_25, content_body("x", references=(small,) * 3)).status_code == 200
    too_many = generate(client, NANO_25, content_body("x", references=(small,) * 4))
    assert too_many.status_code == 400
    assert "at most 3" in error_of(too_many)["message"]
    assert (
        generate(client, NANO_PRO, content_body("x", references=(small,) * 14)).status_code == 200
    )
    assert (
        generate(client, NANO_PRO, content_body("x", references=(small,) * 15)).status_code == 400
    )


# --- :predict (Imagen) ------------------------------------------------------------------


def test_predict_returns_sample_count_images(client: httpx.Client) -> None:
    body = {
        "instances": [{"prompt": "a robot"}],
        "parameters": {"sampleCount": 3, "aspectRatio": "16:9", "personGeneration": "allow_adult"},
    }
    response = predict(client, IMAGEN, body)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 3
    pictures = [base64.b64decode(p["bytesBase64Encoded"]) for p in predictions]
    assert all(p["mimeType"] == "image/png" for p in predictions)
    assert all(size_of(picture) == (1024, 576) for picture in pictures)
    assert len(set(pictures)) == 3
    assert predict(client, IMAGEN, body).json() == response.json()


def test_predict_jpeg_2k_and_default_count(client: httpx.Client) -> None:
    body = {
        "instances": [{"prompt": "a robot"}],
        "parameters": {"sampleImageSize": "2K", "outputOptions": {"mimeType": "image/jpeg"}},
    }
    predictions = predict(client, IMAGEN, body).json()["predictions"]
    assert len(predictions) == 4
    first = base64.b64decode(predictions[0]["bytesBase64Encoded"])
    assert predictions[0]["mimeType"] == "image/jpeg"
    assert first[:3] == b"\xff\xd8\xff"
    assert size_of(first) == (2048, 2048)
    fast = predict(client, "imagen-4.0-fast-generate-001", body)
    assert fast.status_code == 400


@pytest.mark.parametrize(
    ("parameters", "message_start"),
    [
        ({"seed": 5}, "seed parameter is not supported in Gemini API."),
        ({"aspectRatio": "2:3"}, "Unsupported aspect ratio: 2:3."),
        ({"sampleCount": 5}, "sampleCount must be between 1 and 4"),
        ({"sampleCount": 0}, "sampleCount must be between 1 and 4"),
    ],
)
def test_predict_validation(
    client: httpx.Client, parameters: dict[str, Any], message_start: str
) -> None:
    response = predict(client, IMAGEN, {"instances": [{"prompt": "x"}], "parameters": parameters})
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(message_start)


def test_predict_unsafe_filters_every_sample(client: httpx.Client) -> None:
    body = {"instances": [{"prompt": "x [sandbox:unsafe]"}], "parameters": {"sampleCount": 2}}
    predictions = predict(client, IMAGEN, body).json()["predictions"]
    assert len(predictions) == 2
    for prediction in predictions:
        assert set(prediction) == {"raiFilteredReason"}
        assert "filtered out" in prediction["raiFilteredReason"]


def test_predict_unsafe_image_filters_the_first_sample_only(client: httpx.Client) -> None:
    body = {"instances": [{"prompt": "x [sandbox:unsafe-image]"}], "parameters": {"sampleCount": 2}}
    predictions = predict(client, IMAGEN, body).json()["predictions"]
    assert set(predictions[0]) == {"raiFilteredReason"}
    assert set(predictions[1]) == {"bytesBase64Encoded", "mimeType"}


# --- fault directives -------------------------------------------------------------------


def test_429_daily_body(client: httpx.Client) -> None:
    response = generate(client, NANO_2, content_body("x [sandbox:429-daily]"))
    assert response.status_code == 429
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    assert error_of(response) == {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing "
        "details. For more information on this error, head to: "
        "https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, "
        "head to: https://ai.dev/usage?tab=rate-limit. \n"
        f"* Quota exceeded for metric: {metric}, limit: 100, model: {NANO_2}\n"
        "Please retry in 58.0s.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": metric,
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": NANO_2},
                        "quotaValue": "100",
                    }
                ],
            },
            RATE_LIMITS_HELP,
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "58s"},
        ],
    }


def test_429_minute_body_and_retry_override(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x [sandbox:429-minute]"))
    assert response.status_code == 429
    error = error_of(response)
    violation = error["details"][0]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    assert violation["quotaDimensions"] == {"location": "global", "model": NANO_PRO}
    assert error["details"][2] == {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "26s",
    }
    assert error["message"].endswith("Please retry in 26.0s.")

    short = error_of(generate(client, NANO_PRO, content_body("[sandbox:429-minute=0.5] x")))
    assert short["details"][2]["retryDelay"] == "0.5s"
    assert short["message"].endswith("Please retry in 0.5s.")


def test_429_without_quota_details(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x [sandbox:429]"))
    assert response.status_code == 429
    assert error_of(response) == {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing "
        "details. For more information on this error, head to: "
        "https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, "
        "head to: https://ai.dev/usage?tab=rate-limit.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [RATE_LIMITS_HELP],
    }


def test_429_project_has_no_model_dimension(client: httpx.Client) -> None:
    response = predict(client, IMAGEN, {"instances": [{"prompt": "x [sandbox:429-project]"}]})
    assert response.status_code == 429
    error = error_of(response)
    violation = error["details"][0]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProject-FreeTier"
    assert "PerModel" not in violation["quotaId"]
    assert violation["quotaDimensions"] == {"location": "global"}
    assert error["details"][2]["retryDelay"] == "3600s"


def test_503_and_500_bodies(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x [sandbox:503]"))
    assert response.status_code == 503
    assert error_of(response) == {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
    }
    response = predict(client, IMAGEN, {"instances": [{"prompt": "x [sandbox:500]"}]})
    assert response.status_code == 500
    assert error_of(response) == {
        "code": 500,
        "message": "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
        "status": "INTERNAL",
    }


def test_unsafe_prompt_is_200_with_block_reason(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x [sandbox:unsafe]"))
    assert response.status_code == 200
    body = response.json()
    assert body["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    assert "candidates" not in body


def test_unsafe_image_is_200_with_image_safety(client: httpx.Client) -> None:
    response = generate(client, NANO_25, content_body("x [sandbox:unsafe-image]"))
    assert response.status_code == 200
    candidate = response.json()["candidates"][0]
    assert candidate["finishReason"] == "IMAGE_SAFETY"
    parts = candidate["content"]["parts"]
    assert len(parts) == 1
    assert set(parts[0]) == {"text"}


def test_delay_directive_waits(client: httpx.Client) -> None:
    started = time.monotonic()
    response = generate(client, NANO_25, content_body("x [sandbox:delay=400]", seed=1))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.4
    # The directive is not drawn: same picture as without it.
    assert final_image(response) == final_image(
        generate(client, NANO_25, content_body("x", seed=1))
    )


def test_unknown_directive_is_400(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x [sandbox:explode]"))
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "Sandbox directive [sandbox:explode]: unknown sandbox directive."
    )


# --- keys -------------------------------------------------------------------------------


def test_missing_key_is_403_unregistered_caller(client: httpx.Client) -> None:
    response = client.post(f"/v1beta/models/{NANO_PRO}:generateContent", json=content_body("x"))
    assert response.status_code == 403
    assert error_of(response) == {
        "code": 403,
        "message": "Method doesn't allow unregistered callers (callers without established "
        "identity). Please use API Key or other form of API consumer identity to call this API.",
        "status": "PERMISSION_DENIED",
    }
    assert client.get("/v1beta/models").status_code == 403


def test_key_in_query_parameter_works(client: httpx.Client) -> None:
    response = client.get("/v1beta/models", params={"key": "query-key"})
    assert response.status_code == 200
    bad = client.get("/v1beta/models", params={"key": "invalid-q"})
    assert bad.status_code == 400


def test_invalid_key(client: httpx.Client) -> None:
    response = generate(client, NANO_PRO, content_body("x"), key="invalid-123")
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0] == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def test_leaked_suspended_and_disabled_keys(client: httpx.Client) -> None:
    leaked = generate(client, NANO_PRO, content_body("x"), key="leaked-1")
    assert leaked.status_code == 403
    assert error_of(leaked) == {
        "code": 403,
        "message": "Your API key was reported as leaked. Please use another API key.",
        "status": "PERMISSION_DENIED",
    }
    suspended = error_of(generate(client, NANO_PRO, content_body("x"), key="suspended-7"))
    assert suspended["code"] == 403
    assert (
        suspended["message"]
        == "Permission denied: Consumer 'api_key:suspended-7' has been suspended."
    )
    assert suspended["details"][0]["reason"] == "CONSUMER_SUSPENDED"
    disabled = error_of(generate(client, NANO_PRO, content_body("x"), key="disabled-2"))
    assert disabled["code"] == 403
    assert disabled["details"][0]["reason"] == "SERVICE_DISABLED"


def test_key_is_checked_before_the_model(client: httpx.Client) -> None:
    response = generate(client, "no-such-model", content_body("x"), key="invalid-1")
    assert response.status_code == 400
    assert error_of(response)["details"][0]["reason"] == "API_KEY_INVALID"


# --- call log ---------------------------------------------------------------------------


def test_call_log_records_and_resets(client: httpx.Client) -> None:
    key = f"calllog-{uuid.uuid4().hex}"
    headers = {"x-goog-api-key": key}
    client.get("/v1beta/models", headers=headers)
    client.post(
        f"/v1beta/models/{NANO_25}:generateContent", json=content_body("x"), headers=headers
    )
    client.post(
        f"/v1beta/models/{NANO_25}:generateContent",
        json=content_body("x [sandbox:503]"),
        headers=headers,
    )
    client.post(f"/v1beta/models/{IMAGEN}:predict", json={"instances": [{}]}, headers=headers)
    client.post(
        f"/v1beta/models/{NANO_25}:generateContent",
        json=content_body("x [sandbox:delay=300]"),
        headers=headers,
    )

    calls = [c for c in client.get("/_sandbox/calls").json()["calls"] if c["key"] == key]
    assert [(c["model"], c["method"], c["status"]) for c in calls] == [
        (None, "list", 200),
        (NANO_25, "generateContent", 200),
        (NANO_25, "generateContent", 503),
        (IMAGEN, "predict", 400),
        (NANO_25, "generateContent", 200),
    ]
    assert all(c["at"].endswith("Z") and c["received"].endswith("Z") for c in calls)
    # "received" is when the call came in, "at" when it was answered: the delay between.
    waited = [
        datetime.fromisoformat(c["at"]) - datetime.fromisoformat(c["received"]) for c in calls
    ]
    assert all(timedelta(0) <= wait < timedelta(seconds=0.3) for wait in waited[:4])
    assert timedelta(seconds=0.299) <= waited[4] < timedelta(seconds=5)  # ms-rounded times

    assert client.delete("/_sandbox/calls").status_code == 200
    assert client.get("/_sandbox/calls").json() == {"calls": []}


# --- in-process: mounted under a prefix, benchmark mode ---------------------------------


async def test_mounted_app_and_fixed_image_mode() -> None:
    outer = FastAPI()
    outer.mount("/sandbox/gemini", create_sandbox_app(SandboxConfig(fixed_image=True)))
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://flowgate/sandbox/gemini"
    ) as http:
        listing = await http.get("/v1beta/models", headers=KEY)
        assert listing.status_code == 200
        assert len(listing.json()["models"]) == len(SANDBOX_MODELS)

        pictures = []
        for seed, ratio in ((1, "16:9"), (2, "1:1")):
            response = await http.post(
                f"/v1beta/models/{NANO_PRO}:generateContent",
                json=content_body("bench", seed=seed, aspect_ratio=ratio, image_size="4K"),
                headers=KEY,
            )
            assert response.status_code == 200
            assert response.headers["x-flowgate-sandbox"] == "1"
            pictures.append(final_image(response))
        assert pictures[0] == pictures[1]
        assert size_of(pictures[0]) == (256, 256)

        # Validation still applies in benchmark mode.
        bad = await http.post(
            f"/v1beta/models/{NANO_PRO}:generateContent",
            json=content_body("bench", aspect_ratio="7:3"),
            headers=KEY,
        )
        assert bad.status_code == 400
        calls = (await http.get("/_sandbox/calls")).json()["calls"]
        assert [c["status"] for c in calls] == [200, 200, 200, 400]


async def test_default_delay_applies_to_generations() -> None:
    app = create_sandbox_app(SandboxConfig(default_delay_ms=300, fixed_image=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as http:
        started = time.monotonic()
        response = await http.post(
            f"/v1beta/models/{NANO_25}:generateContent", json=content_body("x"), headers=KEY
        )
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.3
