"""HTTP request/response models (OpenAI-images-like) and their validation."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

MAX_PROMPT_CHARS = 1000
SUPPORTED_SIZE = "512x512"


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr = Field(..., description="What to draw (1-1000 characters; CLIP reads the first 77 tokens).",
                              max_length=MAX_PROMPT_CHARS)
    negative_prompt: StrictStr = Field("", description="What to avoid.", max_length=MAX_PROMPT_CHARS)
    steps: StrictInt = Field(25, ge=1, le=100, description="Denoising steps.")
    guidance_scale: StrictFloat | StrictInt = Field(7.5, ge=0, le=30, description="Classifier-free guidance scale.")
    seed: Optional[StrictInt] = Field(None, ge=0, le=2**32 - 1, description="Random seed; random when omitted.")
    size: StrictStr = Field(SUPPORTED_SIZE, description="Only 512x512 is supported.")
    n: Literal[1] = Field(1, description="Images per request (only 1).")
    response_format: Literal["b64_json", "png"] = Field(
        "b64_json", description="b64_json: JSON with a base64 PNG; png: the PNG bytes."
    )

    @field_validator("prompt")
    @classmethod
    def prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
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


# Every error type the server answers with (the `error.type` of each 4xx/5xx). The
# metrics count errors by these (sd21_errors{kind}; CloudWatch Errors, Kind).
ERROR_TYPES = ("invalid_request", "overloaded", "not_ready", "draining", "unhealthy", "timeout", "internal")


class ErrorBody(BaseModel):
    type: Literal[ERROR_TYPES]
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
