"""The one exception type for errors a user can cause, and the exit codes the CLI maps them to."""

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # missing/corrupt file, bad option value, prompt too long for the context
EXIT_INCOMPATIBLE = 3  # a draft/target pair whose tokenizers do not line up


class SpecpairError(Exception):
    """An error the user can fix. The message says what to do; the CLI prints it on one line."""

    def __init__(self, message: str, *, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code
