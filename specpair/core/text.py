"""Tokens and text: the one function that says which bytes a token string stands for
(`piece_bytes`, used by every engine, `check` and the cross-vocabulary drafters), and token ids
to text as they stream (`TextStream`: incremental UTF-8, since a character may span tokens, and
stop strings, which may span tokens too, so text that could start one is held back)."""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from .backend import Backend

# Token types, as GGUF files number them (llama.cpp's llama_token_type); HF tokenizers are
# mapped onto them.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
ORDINARY = (NORMAL, BYTE, 0)  # the tokens that plain text is split into
TYPE_NAMES = {NORMAL: "normal", UNKNOWN: "unknown", CONTROL: "control",
              USER_DEFINED: "user-defined", UNUSED: "unused", BYTE: "byte", 0: "undefined"}
SPM_SPACE = "\u2581"  # SentencePiece's visible space
SPM_UNKNOWN = "\u2585".encode()  # what llama.cpp prints for an unknown SentencePiece token


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character standing for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(
        range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_GPT2 = gpt2_byte_decoder()


def piece_bytes(piece: str, kind: int, *, byte_level: bool) -> bytes:
    """The bytes a token stands for, from its string in the vocabulary and its type.

    This is the one token->bytes decoder (engines, `check`, cross-vocabulary drafting): it
    agrees with llama.cpp's own `llama_token_to_piece` on every id of the named models (a
    real-model test checks that). Byte-level BPE (GPT-2's alphabet: a space is 'G' with a dot)
    maps each character to a byte; SentencePiece writes a space as U+2581 and raw bytes as
    <0xNN>; special and user-defined tokens stand for their own text."""
    if kind in (CONTROL, USER_DEFINED):
        return piece.encode("utf-8")
    if kind == UNUSED:
        return b""
    if kind == BYTE or (not byte_level and len(piece) == 6 and piece.startswith("<0x")
                        and piece.endswith(">")):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return piece.encode("utf-8")
    if byte_level:
        try:
            return bytes(_GPT2[c] for c in piece)
        except KeyError:  # outside the alphabet: an added token written as plain text
            return piece.encode("utf-8")
    if kind == UNKNOWN:
        return SPM_UNKNOWN
    return piece.replace(SPM_SPACE, " ").encode("utf-8")


def complete_utf8(data: bytes) -> int:
    """Length of the longest prefix of `data` that ends on a whole UTF-8 character."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b & 0xC0 == 0x80:  # a continuation byte: keep looking for the lead byte
            continue
        need = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4
        return n if back >= need else n - back
    return n


class TextStream:
    def __init__(self, backend: Backend, *, stop: Sequence[str] = ()) -> None:
        self._backend = backend
        self._hidden = backend.eos_ids  # end-of-generation tokens end the text, unprinted
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [s for s in stop if s]
        self._held = ""  # text not yet emitted: it might be the start of a stop string
        self.text = ""  # everything emitted so far
        self.stopped = False
        # set when a stop string is found: how many tokens of the last `add` the output keeps
        # (up to and including the token that completes the stop string; the rest is dropped
        # from the text, the token list and the statistics)
        self.kept_tokens: int | None = None

    def add(self, tokens: Sequence[int]) -> str:
        """Return the text that is now safe to emit (may be empty)."""
        if self.stopped:
            return ""
        for i, token in enumerate(tokens):
            if token not in self._hidden:
                self._held += self._decoder.decode(self._backend.token_bytes(token))
            at = self._find_stop()
            if at is not None:
                self._held = self._held[:at]
                self.stopped = True
                self.kept_tokens = i + 1
                return self._emit(len(self._held))
        # hold back the longest tail that is a prefix of some stop string
        hold = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(self._held)), 0, -1):
                if self._held.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        return self._emit(len(self._held) - hold)

    def _find_stop(self) -> int | None:
        found = [at for s in self._stop if (at := self._held.find(s)) >= 0]
        return min(found) if found else None

    def flush(self) -> str:
        if not self.stopped:
            self._held += self._decoder.decode(b"", final=True)
        return self._emit(len(self._held))

    def _emit(self, n: int) -> str:
        out, self._held = self._held[:n], self._held[n:]
        self.text += out
        return out
