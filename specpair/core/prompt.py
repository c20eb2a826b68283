"""Text to prompt tokens, the one way every command does it (generate, bench, advise, serve).

A chat template often writes the BOS token itself (`{{ bos_token }}` opens Gemma's and Llama 3's),
and the tokenizer adds one too when asked to: the prompt would start with two, which degrades the
output. So a rendered chat prompt gets the tokenizer's BOS only when it does not already begin
with it.
"""

from __future__ import annotations

from .backend import Backend


def encode_prompt(backend: Backend, text: str | list[dict], *, chat: bool) -> list[int]:
    """Token ids for `text`, wrapped in the model's chat template when `chat` is set (then
    `text` may also be a whole conversation: [{"role", "content"}, ...])."""
    if not chat:
        assert isinstance(text, str)
        return backend.tokenize(text)
    tokens = backend.tokenize(backend.chat_prompt(text))
    bos = backend.tokenize("")  # [BOS] for a model that adds one, [] otherwise
    if len(bos) == 1 and tokens[:2] == [bos[0], bos[0]]:
        return tokens[1:]
    return tokens
