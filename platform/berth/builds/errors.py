"""Errors of the build pipeline. Each message is written for the person who pushed: it says what to change."""


class BuildError(Exception):
    """A build could not be made; the message is the last line shown in the build log."""


class BuildCancelled(BuildError):
    """The build was stopped on request before it finished."""


class ProcfileError(BuildError):
    """The Procfile is malformed; `line` is its 1-based line number, or None when the file as a whole is wrong."""

    def __init__(self, message: str, *, line: int | None = None):
        self.line = line
        super().__init__(f"Procfile line {line}: {message}" if line is not None else f"Procfile: {message}")
