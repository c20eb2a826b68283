"""Errors a user can cause, one base type and a few kinds, and the exit codes the CLI maps them to.

Messages speak the API's language. An option a message names is written `{name}` (its keyword
argument: `{n_ctx}`); `str(error)` spells it as the API does ("n_ctx"), and the CLI renders the
same error with its flag ("--n-ctx") through `SpecpairError.render`. One message, two audiences.
"""

from __future__ import annotations

import re
from collections.abc import Callable

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # missing/corrupt file, bad option value, prompt too long for the context
EXIT_INCOMPATIBLE = 3  # a pair that cannot be used (a draft that cannot produce text)
EXIT_INTERRUPTED = 130  # Ctrl-C: the partial output and its statistics are still printed

_OPTION = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class SpecpairError(Exception):
    """An error the user can fix. The message says what to do; the CLI prints it on one line."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        self.template = message
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.render(lambda name: name))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each `{option}` written by `spell` (the CLI passes its flags)."""
        return _OPTION.sub(lambda m: spell(m.group(1)), self.template)


class InvalidOption(SpecpairError):
    """An option's value is out of range or of the wrong kind."""


class ModelError(SpecpairError):
    """A model (or tokenizer) file is missing, corrupt, or cannot be loaded."""


class IncompatiblePair(SpecpairError):
    """A draft that cannot be used with this target at all."""

    exit_code = EXIT_INCOMPATIBLE


class ContextOverflow(SpecpairError):
    """The prompt (or prompt and output) does not fit the context."""


class MissingDependency(SpecpairError):
    """An optional part of specpair is not installed; the message names the extra."""


class EngineError(SpecpairError):
    """The inference engine failed on a request it accepted."""


def missing_extra(extra: str, module: str | None, what: str) -> MissingDependency:
    """The one-line error for an optional extra that is not installed."""
    name = f" ({module} is missing)" if module else ""
    return MissingDependency(f"{what} needs the [{extra}] extra{name}: "
                             f"pip install 'specpair[{extra}]'")
