"""HTTP request/response models (OpenAI-images-like) and their validation."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from .contract import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, ERROR_TYPES  # noqa: F401 - ERROR_TYPES is re-exported

MAX_PROMPT_CHARS = 1000
SUPPORTED_SIZE = "512x512"
# Characters that print nothing: a prompt made only of these (and whitespace) is empty.
INVISIBLE = "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064" \
            "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
# The same rule for the published schema: at least one character that is neither.
VISIBLE_PATTERN = f"[^\\s{INVISIBLE}]"
_INVISIBLE_RE = re.compile(f"[{INVISIBLE}]")
# OpenAI image fields with no meaning here, refused with the reason.
UNSUPPORTED_OPENAI_FIELDS = {
    "style": "style presets are a DALL-E 3 feature; describe the style in the prompt",
    "background": "transparent backgrounds are not supported: images are RGB",
    "moderation": "no moderation levels here; moderate prompts in front of the endpoint",
    "output_compression": "only lossless PNG is produced",
    "partial_images": "streaming partial images is not supported",
    "stream": "streaming is not supported; use response_format png for the raw bytes",
}


def is_visible(value: str) -> bool:
    return any(not char.isspace() for char in _INVISIBLE_RE.sub("", value))


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr = Field(..., description="What to draw (1-1000 characters, at least one visible; CLIP reads "
                              "the first 77 tokens).", max_length=MAX_PROMPT_CHARS,
                              json_schema_extra={"pattern": VISIBLE_PATTERN})
    negative_prompt: StrictStr = Field("", description="What to avoid.", max_length=MAX_PROMPT_CHARS)
    steps: StrictInt = Field(DEFAULT_STEPS, ge=1, le=100, description="Denoising steps.")
    guidance_scale: float = Field(DEFAULT_GUIDANCE_SCALE, ge=0, le=30, strict=True, allow_inf_nan=False,
                                  description="Classifier-free guidance scale (0-30; at most 1: no guidance).")
    seed: Optional[StrictInt] = Field(None, ge=0, le=2**32 - 1, description="Random seed; random when omitted.")
    size: StrictStr = Field(SUPPORTED_SIZE, description="Only 512x512 is supported.",
                            json_schema_extra={"enum": [SUPPORTED_SIZE]})
    n: Literal[1] = Field(1, description="Images per request (only 1).")
    response_format: Literal["b64_json", "png"] = Field(
        "b64_json", description="b64_json: JSON with a base64 PNG; png: the PNG bytes."
    )
    # OpenAI clients send these: `model` must name the served model (the server publishes
    # the name in its OpenAPI document); the others are accepted where they mean something.
    model: Optional[StrictStr] = Field(None, max_length=200, description="The served model's name (GET /v1/models).")
    quality: Optional[Literal["auto", "standard"]] = Field(None, description="Accepted for OpenAI clients; one "
                                                                             "quality only.")
    output_format: Optional[Literal["png"]] = Field(None, description="Only png.")
    user: Optional[StrictStr] = Field(None, max_length=256, description="An end-user id; logged nowhere.")

    @model_validator(mode="before")
    @classmethod
    def refuse_unsupported_openai_fields(cls, data):
        if isinstance(data, dict):
            for name, reason in UNSUPPORTED_OPENAI_FIELDS.items():
                if name in data:
                    raise ValueError(f"{name} is not supported: {reason}")
        return data

    @field_validator("steps", "seed", mode="before")
    @classmethod
    def integral_numbers_are_integers(cls, value):
        # JSON Schema's "integer" includes 25.0 (a number with no fraction): so does the server.
        # Strings and booleans stay refused (StrictInt).
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("prompt")
    @classmethod
    def prompt_not_blank(cls, value: str) -> str:
        if not is_visible(value):
            raise ValueError("prompt must not be empty (or only invisible characters)")
        return value

    @field_validator("size")
    @classmethod
    def only_512(cls, value: str) -> str:
        if value != SUPPORTED_SIZE:
            raise ValueError(f"size {value!r} is not supported: this model generates only {SUPPORTED_SIZE}")
        return value


class ImageData(BaseModel):
    b64_json: str
    seed: int


class GenerationResponse(BaseModel):
    created: int
    data: list[ImageData]


class ErrorBody(BaseModel):
    type: Literal[ERROR_TYPES]
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
