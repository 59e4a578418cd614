"""One error hierarchy and the exit-code contract shared by the CLI and the API."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    REFUSED = 4
    UNAVAILABLE = 5
    PENDING = 6
    LIMIT = 7
    STORE = 8
    WARN = 9
    FAIL = 10
    INTERRUPTED = 130


EXIT_CODE_HELP = {
    ExitCode.OK: "done, or already so",
    ExitCode.ERROR: "unexpected internal error",
    ExitCode.USAGE: "bad command line or malformed request",
    ExitCode.CONFIG: "configuration invalid",
    ExitCode.REFUSED: "a guard refused the prefix, or the input is not a valid address",
    ExitCode.UNAVAILABLE: "daemon not running or not answering",
    ExitCode.PENDING: "ban stored, a backend has not acknowledged it yet (the daemon retries)",
    ExitCode.LIMIT: "max_routes or max_rate reached; nothing in place was touched",
    ExitCode.STORE: "the state store cannot be written (disk full, read-only); nothing was changed",
    ExitCode.WARN: "doctor: the worst check warns (works, but look at it)",
    ExitCode.FAIL: "doctor: a check failed (a link of the chain is broken)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGINT)",
}


class F2bBgpError(Exception):
    """An expected failure: one-line message, optional hint, an exit code."""

    exit_code = ExitCode.ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def code(self) -> str:
        return self.exit_code.name.lower()


class ConfigError(F2bBgpError):
    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[str], path: str = "") -> None:
        self.problems = problems
        where = f"{path}: " if path else ""
        first = problems[0] if problems else "invalid configuration"
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        hint = "run 'f2b-bgp check-config' to list every problem" if more else ""
        super().__init__(f"{where}{first}{more}", hint=hint)


class RefusedError(F2bBgpError):
    exit_code = ExitCode.REFUSED


class LimitError(F2bBgpError):
    exit_code = ExitCode.LIMIT


class UnavailableError(F2bBgpError):
    exit_code = ExitCode.UNAVAILABLE


class PendingError(F2bBgpError):
    exit_code = ExitCode.PENDING


class StoreError(F2bBgpError):
    """The store cannot be read or written; memory was left as the disk."""

    exit_code = ExitCode.STORE


class RequestError(F2bBgpError):
    """A malformed API request (bad field type, unknown op)."""

    exit_code = ExitCode.USAGE


ERRORS_BY_CODE = {cls.exit_code.name.lower(): cls for cls in (RefusedError, LimitError, UnavailableError, PendingError,
                                                                RequestError, StoreError)}
