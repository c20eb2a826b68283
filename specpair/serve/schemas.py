"""OpenAI-compatible request models and response builders (the shapes of OpenAI's chat and
completions APIs, as llama.cpp's server and vLLM accept them), plus specpair's additions:
a `speculative` request option and a `speculative` statistics object in responses."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..call import MAX_STOP_CHARS, MAX_STOPS
from ..core.stats import DecodeStats


class Speculative(BaseModel):
    """Per-request override of the server's drafter."""

    model_config = ConfigDict(extra="forbid")
    draft: Literal["auto", "none", "ngram", "suffix", "model"] | None = None
    k: int | None = Field(default=None, ge=1, le=64)


class StreamOptions(BaseModel):
    include_usage: bool = False


def _utf8(value: str) -> str:
    """A string the model can read: JSON allows lone surrogates ("\\ud800"), UTF-8 does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate)") from None
    return value


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls...: accepted, not used
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = None

    @field_validator("role")
    @classmethod
    def _developer_is_system(cls, value):
        # OpenAI's newer clients send their instructions as "developer"; chat templates know
        # only "system" (Qwen's renders nothing for another role: the instructions vanished)
        return "system" if value == "developer" else value

    @field_validator("content")
    @classmethod
    def _text(cls, value):
        if isinstance(value, str):
            return _utf8(value)
        if isinstance(value, list):
            for part in value:
                if isinstance(part.get("text"), str):
                    _utf8(part["text"])
        return value

    @model_validator(mode="after")
    def _has_content(self):
        # OpenAI refuses these too: only an assistant turn (tool calls) may omit content
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(p["text"] for p in self.content
                           if p.get("type") == "text" and isinstance(p.get("text"), str))
        return self.content or ""


# OpenAI fields this server does not implement: accepted at their neutral value only, refused
# otherwise (a request that asks for log-probabilities or a penalty must not get text made
# without them as if it had)
NEUTRAL = {"logprobs": 0, "top_logprobs": 0, "frequency_penalty": 0, "presence_penalty": 0,
           "repetition_penalty": 1, "logit_bias": {}}


def _is_neutral(value: object, neutral: object) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
        return False
    return value == neutral


class _Common(BaseModel):
    # Unknown fields (user, metadata...) are accepted and ignored, as OpenAI-compatible servers
    # do; known fields of the wrong type are a 400, and so are the unimplemented ones (NEUTRAL)
    # set to anything but their neutral value.
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # sampling fields default to None (not said): the server's defaults apply then
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, lt=1.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stop_text(cls, value):
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > MAX_STOPS:  # each stop is looked for after every token
            raise ValueError(f"at most {MAX_STOPS} stop sequences, got {len(stops)}")
        for s in stops:
            _utf8(s)
            if len(s) > MAX_STOP_CHARS:
                raise ValueError(f"a stop sequence has at most {MAX_STOP_CHARS} characters, "
                                 f"got {len(s)}")
        return value
    stream: bool = False
    stream_options: StreamOptions | None = None
    speculative: Speculative | None = None

    @model_validator(mode="after")
    def _unimplemented_are_neutral(self):
        extra = self.model_extra or {}
        for name, neutral in NEUTRAL.items():
            if name in extra and not _is_neutral(extra[name], neutral):
                raise ValueError(f"{name} is not supported by this server: leave it out or "
                                 f"set it to {neutral!r}")
        return self

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(_Common):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _text(cls, value):
        for s in [value] if isinstance(value, str) else value:
            _utf8(s)
        return value

    def text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise ValueError("prompt: give one string (batches of prompts are not served)")
            return self.prompt[0]
        return self.prompt


def error_body(message: str, *, kind: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(stats: DecodeStats, reused: int) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.new_tokens,
            "total_tokens": stats.prompt_tokens + stats.new_tokens,
            "prompt_tokens_details": {"cached_tokens": reused}}


def speculative(stats: DecodeStats, drafter: str, reused: int) -> dict:
    """specpair's statistics of one response (definitions: stats.DecodeStats)."""
    return {
        "drafter": drafter,
        "completion_tokens": stats.new_tokens,
        "drafts": stats.drafts,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "acceptance_rate": stats.acceptance_rate,
        "mean_acceptance_length": stats.mean_acceptance_length,
        "acceptance_by_position": stats.acceptance_by_position,
        "draft_seconds": stats.draft_seconds,
        "target_seconds": stats.target_seconds,
        "decode_seconds": stats.decode_seconds,
        "prefill_seconds": stats.prefill_seconds,
        "tokens_per_second": stats.tokens_per_second,
        "prompt_tokens_reused": reused,
    }


def finish_reason(stats: DecodeStats) -> str:
    return "length" if stats.finish in ("max_tokens", "context") else "stop"


def completion(kind: str, model: str, rid: str, text: str, stats: DecodeStats,
               drafter: str, reused: int) -> dict:
    choice: dict = {"index": 0, "finish_reason": finish_reason(stats), "logprobs": None}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {"id": rid, "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice],
            "usage": usage(stats, reused), "speculative": speculative(stats, drafter, reused)}


def chunk(kind: str, model: str, rid: str, *, text: str | None = None,
          finish: str | None = None, role: bool = False, pieces: list | None = None) -> dict:
    """One SSE chunk. `pieces` ([text, from_draft, n_tokens]) say where each part of the text
    came from: the chat page colours them; OpenAI clients ignore the extra field."""
    if kind == "chat":
        delta: dict = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    out = {"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
           "created": int(time.time()), "model": model, "choices": [choice]}
    if pieces:
        out["specpair"] = {"pieces": pieces}
    return out
