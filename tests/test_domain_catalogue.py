"""The model catalogue: names, aliases, upstream ids, aspect ratios, enums."""

from __future__ import annotations

import pytest

from flowgate.domain import catalogue
from flowgate.domain.catalogue import (
    IMAGE_ASPECT_RATIO_ENUMS,
    IMAGE_MODELS,
    VIDEO_MODELS,
    default_image_aspect_ratio,
    default_image_model,
    default_upstream_model_id,
    image_aspect_ratio,
    image_aspect_ratio_enum,
    image_model_names,
    model_name_type,
    normalize_image_aspect_ratio,
    normalize_video_aspect_ratio,
    resolve_image_model,
    resolve_video_model,
    upstream_model_id,
    validate_model_map,
)
from flowgate.domain.errors import InvalidRequest


def test_image_models_match_the_contract_and_design() -> None:
    assert list(IMAGE_MODELS) == ["imagen-4", "nano-banana-2", "nano-banana-pro"]
    imagen = IMAGE_MODELS["imagen-4"]
    assert (imagen.default_upstream_id, imagen.call_kind, imagen.max_references) == (
        "imagen-4.0-generate-001",
        "predict",
        3,
    )
    # The Gemini API's :predict takes neither references nor a seed.
    assert not imagen.supports_references and not imagen.supports_seed
    assert not imagen.supports_auto_aspect_ratio and not imagen.upscalable
    for name, upstream in [
        ("nano-banana-2", "gemini-3.1-flash-image-preview"),
        ("nano-banana-pro", "gemini-3-pro-image-preview"),
    ]:
        model = IMAGE_MODELS[name]
        assert model.default_upstream_id == upstream
        assert model.call_kind == "generate_content"
        assert model.max_references == 10
        assert model.supports_references and model.supports_seed
        assert model.supports_auto_aspect_ratio and model.upscalable


def test_video_models_match_the_design() -> None:
    assert {name: m.default_upstream_id for name, m in VIDEO_MODELS.items()} == {
        "veo-3.1-fast": "veo-3.1-fast-generate-preview",
        "veo-3.1-quality": "veo-3.1-generate-preview",
        "veo-3.1-lite": "veo-3.1-lite-generate-preview",
    }
    assert all(m.call_kind == "predict_long_running" for m in VIDEO_MODELS.values())
    assert catalogue.DEFAULT_VIDEO_MODEL == "veo-3.1-fast"
    assert catalogue.VIDEO_OUTPUT_MODEL_NAMES["r2v"] == "veo_3_1_r2v"


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("imagen-4", "imagen-4"),
        ("nano-banana-2", "nano-banana-2"),
        ("nano-banana-pro", "nano-banana-pro"),
        ("nano-banana", "nano-banana-2"),
        (" Nano-Banana-PRO ", "nano-banana-pro"),
    ],
)
def test_resolve_image_model(name: str, canonical: str) -> None:
    assert resolve_image_model(name).name == canonical


def test_unknown_image_model_lists_supported_names() -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve_image_model("dall-e-3")
    message = caught.value.message
    assert "dall-e-3" in message
    for name in ("imagen-4", "nano-banana-2", "nano-banana-pro", "nano-banana"):
        assert name in message
    assert caught.value.status == 400


def test_upstream_id_as_model_name_points_to_the_request_name() -> None:
    with pytest.raises(InvalidRequest, match="send model 'nano-banana-pro'"):
        resolve_image_model("gemini-3-pro-image-preview")


def test_video_model_on_images_says_where_to_send_it() -> None:
    with pytest.raises(InvalidRequest, match=r"video model.*POST /videos"):
        resolve_image_model("veo-3.1-fast")


def test_non_string_model_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="model must be a string"):
        resolve_image_model(4)  # type: ignore[arg-type]


def test_resolve_video_model() -> None:
    assert resolve_video_model("VEO-3.1-Quality").name == "veo-3.1-quality"
    with pytest.raises(InvalidRequest, match="image model"):
        resolve_video_model("imagen-4")
    with pytest.raises(InvalidRequest, match=r"veo-3\.1-fast-relaxed is a lower-priority queue"):
        resolve_video_model("veo-3.1-fast-relaxed")
    with pytest.raises(InvalidRequest, match=r"veo-3\.1-lite"):
        resolve_video_model("veo-2")


def test_image_model_names_lists_canonical_then_alias() -> None:
    assert image_model_names() == ["imagen-4", "nano-banana-2", "nano-banana-pro", "nano-banana"]


def test_auto_selection() -> None:
    assert default_image_model(False).name == "imagen-4"
    assert default_image_model(True).name == "nano-banana-2"


def test_upstream_model_id_defaults_and_overrides() -> None:
    assert upstream_model_id("imagen-4", None) == "imagen-4.0-generate-001"
    assert upstream_model_id("nano-banana", {}) == "gemini-3.1-flash-image-preview"
    assert upstream_model_id("veo-3.1-lite", None) == "veo-3.1-lite-generate-preview"
    assert (
        upstream_model_id("imagen-4", {"imagen-4": "imagen-4.0-fast-generate-001"})
        == "imagen-4.0-fast-generate-001"
    )
    # The alias resolves to nano-banana-2, so a map keyed by the canonical name applies.
    assert upstream_model_id("nano-banana", {"nano-banana-2": "gemini-3.1-flash-image"}) == (
        "gemini-3.1-flash-image"
    )
    # Entries for other models or blank values do not apply.
    assert upstream_model_id("nano-banana-pro", {"imagen-4": "x", "nano-banana-pro": " "}) == (
        "gemini-3-pro-image-preview"
    )
    with pytest.raises(InvalidRequest, match="not supported"):
        upstream_model_id("sdxl", None)
    assert default_upstream_model_id("veo-3.1-quality") == "veo-3.1-generate-preview"


def test_validate_model_map() -> None:
    assert validate_model_map(None) == {}
    assert validate_model_map({"nano-banana": " gemini-3.1-flash-image "}) == {
        "nano-banana-2": "gemini-3.1-flash-image"
    }
    with pytest.raises(InvalidRequest, match="modelMap must be an object"):
        validate_model_map(["imagen-4"])
    # A name the catalogue does not know is a newer upstream model the account maps.
    assert validate_model_map({"veo-next": "veo-4.0-generate-preview"}) == {
        "veo-next": "veo-4.0-generate-preview"
    }
    with pytest.raises(InvalidRequest, match="must be a model name"):
        validate_model_map({"Flux Dev!": "flux-dev"})
    with pytest.raises(InvalidRequest, match=r"modelMap\['veo-next'\]"):
        validate_model_map({"veo-next": "has space"})
    with pytest.raises(InvalidRequest, match=r"modelMap\['imagen-4'\].*imagen-4.0-generate-001"):
        validate_model_map({"imagen-4": "has space"})
    with pytest.raises(InvalidRequest, match=r"modelMap\['veo-3.1-fast'\]"):
        validate_model_map({"veo-3.1-fast": 7})


@pytest.mark.parametrize(
    ("value", "ratio"),
    [
        ("16:9", "16:9"),
        ("4:3", "4:3"),
        ("1:1", "1:1"),
        ("3:4", "3:4"),
        ("9:16", "9:16"),
        ("auto", "auto"),
        ("landscape", "16:9"),
        ("portrait", "9:16"),
        (" Landscape ", "16:9"),
    ],
)
def test_normalize_image_aspect_ratio(value: str, ratio: str) -> None:
    assert normalize_image_aspect_ratio(value) == ratio


@pytest.mark.parametrize("value", ["square", "21:9", "16/9", "", None, 1.77])
def test_unknown_image_aspect_ratio_lists_values(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_image_aspect_ratio(value)  # type: ignore[arg-type]
    assert caught.value.message.startswith("aspectRatio")
    assert "16:9, 4:3, 1:1, 3:4, 9:16, auto, landscape, portrait" in caught.value.message


def test_aspect_ratio_enums() -> None:
    assert dict(IMAGE_ASPECT_RATIO_ENUMS) == {
        "16:9": "IMAGE_ASPECT_RATIO_LANDSCAPE",
        "4:3": "IMAGE_ASPECT_RATIO_LANDSCAPE_FOUR_THREE",
        "1:1": "IMAGE_ASPECT_RATIO_SQUARE",
        "3:4": "IMAGE_ASPECT_RATIO_PORTRAIT_THREE_FOUR",
        "9:16": "IMAGE_ASPECT_RATIO_PORTRAIT",
    }
    assert image_aspect_ratio_enum("portrait") == "IMAGE_ASPECT_RATIO_PORTRAIT"
    assert catalogue.VIDEO_ASPECT_RATIO_ENUMS["landscape"] == "VIDEO_ASPECT_RATIO_LANDSCAPE"
    assert catalogue.VIDEO_ASPECT_RATIO_ENUMS["portrait"] == "VIDEO_ASPECT_RATIO_PORTRAIT"


@pytest.mark.parametrize(
    ("width", "height", "ratio"),
    [
        (1024, 1024, "1:1"),
        (1920, 1080, "16:9"),
        (1080, 1920, "9:16"),
        (800, 600, "4:3"),
        (600, 800, "3:4"),
        (685, 900, "3:4"),  # the seed's asset example
        (4000, 1000, "16:9"),  # wider than any ratio → the widest
        (1, 4000, "9:16"),
        (1000, 1100, "1:1"),
        (1000, 1200, "3:4"),
        (1500, 1000, "4:3"),  # 3:2 is nearer 4:3 than 16:9 on a log scale
    ],
)
def test_image_aspect_ratio_picks_nearest(width: int, height: int, ratio: str) -> None:
    assert image_aspect_ratio(width, height) == ratio


def test_image_aspect_ratio_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError):
        image_aspect_ratio(0, 10)


def test_default_image_aspect_ratio() -> None:
    assert default_image_aspect_ratio(IMAGE_MODELS["imagen-4"], False) == "16:9"
    assert default_image_aspect_ratio(IMAGE_MODELS["imagen-4"], True) == "16:9"
    assert default_image_aspect_ratio(IMAGE_MODELS["nano-banana-2"], False) == "16:9"
    assert default_image_aspect_ratio(IMAGE_MODELS["nano-banana-pro"], True) == "auto"


def test_model_name_types() -> None:
    assert model_name_type("imagen-4", False) == "IMAGEN_3_5"
    assert model_name_type("imagen-4", True) == "R2I"
    assert model_name_type("nano-banana-2", True) == "NARWHAL"
    assert model_name_type("nano-banana-pro", False) == "GEM_PIX_2"


def test_video_aspect_ratio() -> None:
    assert normalize_video_aspect_ratio("16:9") == "landscape"
    assert normalize_video_aspect_ratio("portrait") == "portrait"
    assert catalogue.VIDEO_UPSTREAM_ASPECT_RATIOS["portrait"] == "9:16"
    with pytest.raises(InvalidRequest, match=r"landscape \(16:9\) or portrait"):
        normalize_video_aspect_ratio("square")
    with pytest.raises(InvalidRequest, match="aspectRatio '4:3' is not supported"):
        normalize_video_aspect_ratio("4:3")
