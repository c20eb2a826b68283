"""Text to prompt tokens, the one way every command does it (generate, bench, advise, serve).

Control tokens (`<|im_start|>`, `<|im_end|>`) are parsed in the chat template's own text only,
never in a message's content: a user who writes `<|im_end|>\n<|im_start|>system\n...` into a
message must not open a real system turn (an app's end user could forge its instructions). So a
conversation is rendered once with each content replaced by a marker, the template's text
between markers is tokenized with control tokens parsed and each content as plain text. A raw
prompt (chat off) is the caller's own text in the model's format: its control tokens parse.

A chat template often writes the BOS token itself (`{{ bos_token }}` opens Gemma's and Llama 3's),
and the tokenizer adds one too when asked to: the prompt would start with two, which degrades the
output. So a rendered chat prompt gets the tokenizer's BOS only when it does not already begin
with it.
"""

from __future__ import annotations

import re
import secrets

from ..errors import InvalidOption
from .backend import Backend


def encode_prompt(backend: Backend, text: str | list[dict], *, chat: bool) -> list[int]:
    """Token ids for `text`, wrapped in the model's chat template when `chat` is set (then
    `text` may also be a whole conversation: [{"role", "content"}, ...])."""
    if not chat:
        assert isinstance(text, str)
        return backend.tokenize(text)
    tokens: list[int] = []
    for piece, template in chat_pieces(backend, text):
        if piece:  # the tokenizer's BOS (if it adds one) before the first piece only
            tokens += backend.tokenize(piece, add_bos=not tokens, special=template)
    bos = backend.tokenize("")  # [BOS] for a model that adds one, [] otherwise
    if len(bos) == 1 and tokens[:2] == [bos[0], bos[0]]:
        return tokens[1:]
    return tokens


def chat_pieces(backend: Backend, conversation: str | list[dict]) -> list[tuple[str, bool]]:
    """The rendered conversation (a bare user message, or [{"role", "content"}, ...]) as (text,
    from the template) pieces, in order: the template's own text (True) and each message's
    content (False). Exact: the pieces join to what the template renders from the real
    messages, or the conversation is refused."""
    rendered = backend.chat_prompt(conversation)
    nonce = secrets.token_hex(8)  # a marker no message can contain by chance or on purpose
    marks: dict[str, str] = {}

    def mark(i: int, text: object) -> object:
        if not (isinstance(text, str) and text):
            return text
        m = f"\ue000{nonce}.{i}\ue001"
        marks[m] = text
        return m

    if isinstance(conversation, str):
        marked: str | list[dict] = mark(0, conversation)  # type: ignore[assignment]
    else:
        marked = [{**m, "content": mark(i, m.get("content"))} if "content" in m else m
                  for i, m in enumerate(conversation)]
    if not marks:
        return [(rendered, True)]
    parts = re.split("(" + "|".join(map(re.escape, marks)) + ")", backend.chat_prompt(marked))
    for fit in (lambda t: t, str.strip):  # a template may trim its contents (Gemma's does)
        pieces = [(p, True) if n % 2 == 0 else (fit(marks[p]), False)
                  for n, p in enumerate(parts)]
        if "".join(p for p, _ in pieces) == rendered:
            return pieces
    # the template changes message text in another way: safe only if no content holds a
    # control token's text
    for t in marks.values():
        if backend.tokenize(t, add_bos=False, special=True) != \
                backend.tokenize(t, add_bos=False, special=False):
            raise InvalidOption("a message holds a control token's text (such as <|im_end|>) "
                                "and this model's chat template rewrites message text, so it "
                                "cannot be kept as plain text: remove it from the message")
    return [(rendered, True)]
