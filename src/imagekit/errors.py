"""The one error root, and its kinds by meaning. The CLI maps ``exit_code`` to the exit status:
1 when a check ran and found drift or a failure, 2 when imagekit could not do what was asked."""
from __future__ import annotations

import contextlib
from typing import Any


class ImagekitError(Exception):
    """Anything imagekit reports to a user: a message and, where known, what to do."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def as_dict(self) -> dict[str, Any]:
        """The error as JSON data (``--json`` prints it under "error")."""
        return {"kind": type(self).__name__, "message": self.message, "hint": self.hint,
                "exit_code": self.exit_code, "differences": []}


class UsageError(ImagekitError):
    """The command line asks for something that cannot be done as asked."""

    def __init__(self, message: str, *, option: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{option}: {message}" if option else message, hint=hint)
        self.option = option


class ConfigError(ImagekitError):
    """imagekit.toml, an IMAGEKIT_* variable or a flag is wrong."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None,
                 hint: str | None = None) -> None:
        where = " ".join(p for p in (f"key '{key}'" if key else "", f"in {source}" if source else "") if p)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.key = key
        self.source = source


class PreconditionError(ImagekitError):
    """Something must exist or be done first: a build, an image, a promotion, root rights."""


class ToolError(ImagekitError):
    """An external tool (uv, pip, docker, debootstrap...) failed or is missing."""

    def __init__(self, message: str, *, cmd: list[str] | None = None, output: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cmd = cmd or []
        self.output = output


class LockConflict(ImagekitError):
    """The requirements cannot be satisfied together."""


class EngineError(ImagekitError):
    """The Docker engine is unreachable or refused an operation."""


class RegistryError(ImagekitError):
    """The OCI registry is unreachable, refused, or answered something unexpected.

    ``status`` is the HTTP status (0: no answer); ``codes`` the OCI error codes of the body
    (``MANIFEST_UNKNOWN``, ``DENIED``...)."""

    def __init__(self, message: str, *, status: int = 0, codes: tuple[str, ...] = (),
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.codes = codes

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "status": self.status, "codes": list(self.codes)}


class CheckFailed(ImagekitError):
    """A check ran and found drift or a failure (exit 1), as opposed to not being able to run."""

    exit_code = 1

    def __init__(self, message: str, *, differences: list[str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.differences = differences or []

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {d}" for d in self.differences)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "differences": list(self.differences)}


class InternalError(ImagekitError):
    """Something imagekit did not expect (a bug): said as an error, never as a traceback."""


@contextlib.contextmanager
def infrastructure(what: str):
    """What the parts a run drives raise reaches the user as imagekit's error naming ``what`` failed and
    why, never as a traceback: the engine, a server or a connection (EngineError), a file of this machine
    (PreconditionError naming the file). Anything else is a bug and goes on as it is."""
    import botocore.exceptions
    import docker.errors
    import requests

    try:
        yield
    except ImagekitError:
        raise
    except (docker.errors.DockerException, requests.RequestException, botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError, ConnectionError, TimeoutError) as e:
        part = "the Docker engine" if isinstance(e, docker.errors.DockerException) else "a server the run uses"
        raise EngineError(f"{what} could not go on: {type(e).__name__}: {e}",
                          hint=f"{part} did not answer as expected: check it (`imagekit doctor`), then run again") from None
    except OSError as e:  # a file or folder of this machine, not the engine
        raise PreconditionError(f"{what} could not go on: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
                                hint="check that file or folder and its permissions") from None
