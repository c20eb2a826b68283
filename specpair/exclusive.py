"""One generation at a time on a pair's models, whose caches a generation owns from its first
piece to its end.

Another thread's call waits for the running one to end; a second call from the thread whose
stream is suspended (a stream read halfway, then `generate`) would decode over that stream's
cache and change its text, so it is refused. (Several requests at once go through a scheduler:
specpair/schedule.) Written here because `threading.Lock` cannot tell the two callers apart.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .errors import SpecpairError


class Exclusive:
    def __init__(self) -> None:
        self._busy = threading.Condition()
        self._owner: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._busy:
            if self._owner == me:
                raise SpecpairError(
                    "this Pair is in the middle of another stream in this thread: finish or "
                    "close that stream first (pieces.close()), or use one Pair per stream")
            while self._owner is not None:
                self._busy.wait()
            self._owner = me
        try:
            yield
        finally:
            with self._busy:
                self._owner = None
                self._busy.notify()


__all__ = ["Exclusive"]
