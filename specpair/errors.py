"""The one exception type for errors a user can cause, and the exit codes the CLI maps them to."""

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # missing/corrupt file, bad option value, prompt too long for the context
EXIT_INCOMPATIBLE = 3  # a pair that cannot be used (a draft that cannot produce text)
EXIT_INTERRUPTED = 130  # Ctrl-C: the partial output and its statistics are still printed


class SpecpairError(Exception):
    """An error the user can fix. The message says what to do; the CLI prints it on one line."""

    def __init__(self, message: str, *, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code
