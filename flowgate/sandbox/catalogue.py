"""The models the sandbox knows, with the limits Google documents for each.

Kept apart from ``flowgate.domain.catalogue`` on purpose: the sandbox imitates
Google, so its rules must not silently follow flowgate's own catalogue — a
mismatch between the two is exactly what the sandbox is there to reveal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ModelFamily = Literal["gemini-image", "imagen", "veo"]

# Ratios accepted by ``imageConfig.aspectRatio`` (order as in Google's error message).
GEMINI_RATIOS: tuple[str, ...] = (
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)  # fmt: skip
GEMINI_31_FLASH_RATIOS: tuple[str, ...] = (
    "1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5", "5:4", "8:1", "9:16", "16:9",
    "21:9",
)  # fmt: skip
IMAGEN_RATIOS: tuple[str, ...] = ("1:1", "3:4", "4:3", "9:16", "16:9")

# Long side in pixels for each ``imageSize`` / ``sampleImageSize`` value.
LONG_SIDE_PX: dict[str, int] = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}

# Every action name the Gemini API has for models; an action outside this set is a 404,
# a known action the model does not support is a 400.
KNOWN_ACTIONS: frozenset[str] = frozenset(
    {
        "generateContent",
        "streamGenerateContent",
        "countTokens",
        "batchGenerateContent",
        "embedContent",
        "batchEmbedContents",
        "predict",
        "predictLongRunning",
    }
)


@dataclass(frozen=True)
class SandboxModel:
    """One upstream model id as the sandbox serves it."""

    model_id: str
    display_name: str
    description: str
    family: ModelFamily
    methods: tuple[str, ...]
    aspect_ratios: tuple[str, ...] = ()
    image_sizes: tuple[str, ...] = ()
    max_references: int = 0
    # Gemini 3 image models "think" and send interim parts marked ``thought: true``.
    thinks: bool = False

    def listing(self) -> dict[str, Any]:
        """The model as ``GET /v1beta/models`` shows it."""
        return {
            "name": f"models/{self.model_id}",
            "version": "sandbox",
            "displayName": self.display_name,
            "description": self.description,
            "inputTokenLimit": 65536 if self.family == "gemini-image" else 480,
            "outputTokenLimit": 32768 if self.family == "gemini-image" else 8192,
            "supportedGenerationMethods": list(self.methods),
        }


def _gemini(model_id: str, name: str, *, flash31: bool, pro: bool) -> SandboxModel:
    ratios: tuple[str, ...]
    sizes: tuple[str, ...]
    if flash31:
        ratios, sizes = GEMINI_31_FLASH_RATIOS, ("512", "1K", "2K", "4K")
    elif pro:
        ratios, sizes = GEMINI_RATIOS, ("1K", "2K", "4K")
    else:
        ratios, sizes = GEMINI_RATIOS, ("1K",)
    thinks = model_id.startswith("gemini-3")
    return SandboxModel(
        model_id=model_id,
        display_name=name,
        description=f"Sandbox imitation of {name} (draws test pictures, no AI).",
        family="gemini-image",
        methods=("generateContent",),
        aspect_ratios=ratios,
        image_sizes=sizes,
        max_references=14 if thinks else 3,
        thinks=thinks,
    )


def _imagen(model_id: str, name: str, *, sizes: tuple[str, ...]) -> SandboxModel:
    return SandboxModel(
        model_id=model_id,
        display_name=name,
        description=f"Sandbox imitation of {name} (draws test pictures, no AI).",
        family="imagen",
        methods=("predict",),
        aspect_ratios=IMAGEN_RATIOS,
        image_sizes=sizes,
    )


def _veo(model_id: str, name: str) -> SandboxModel:
    return SandboxModel(
        model_id=model_id,
        display_name=name,
        description=f"Sandbox imitation of {name}.",
        family="veo",
        methods=("predictLongRunning",),
        aspect_ratios=("16:9", "9:16"),
    )


SANDBOX_MODELS: tuple[SandboxModel, ...] = (
    _gemini("gemini-2.5-flash-image", "Nano Banana", flash31=False, pro=False),
    _gemini("gemini-3.1-flash-image-preview", "Nano Banana 2 (preview)", flash31=True, pro=False),
    _gemini("gemini-3.1-flash-image", "Nano Banana 2", flash31=True, pro=False),
    _gemini("gemini-3-pro-image-preview", "Nano Banana Pro (preview)", flash31=False, pro=True),
    _imagen("imagen-4.0-generate-001", "Imagen 4", sizes=("1K", "2K")),
    _imagen("imagen-4.0-ultra-generate-001", "Imagen 4 Ultra", sizes=("1K", "2K")),
    _imagen("imagen-4.0-fast-generate-001", "Imagen 4 Fast", sizes=("1K",)),
    _veo("veo-3.1-generate-preview", "Veo 3.1"),
    _veo("veo-3.1-fast-generate-preview", "Veo 3.1 Fast"),
    _veo("veo-3.1-lite-generate-preview", "Veo 3.1 Lite"),
)

MODELS_BY_ID: dict[str, SandboxModel] = {m.model_id: m for m in SANDBOX_MODELS}
