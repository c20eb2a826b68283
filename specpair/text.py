"""Token ids to text as they stream: incremental UTF-8 (a character may span tokens) and stop
strings (which may span tokens too, so text that could start one is held back)."""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from .backends import Backend


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
