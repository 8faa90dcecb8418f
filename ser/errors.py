"""The one exception family for bad input: every message names the file or row and the fix.

The CLI prints these as one line and exits with status 2; anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Bad input (a file, a row, an option) rather than a bug in ser."""


class UnknownNameError(UserError, LookupError):
    """A name that no registry holds (head, loss, extractor family, corpus, executor); the message names
    the choices. A ``LookupError`` too, so a caller that probes a registry can catch it as one."""


def unknown_name(
    what: str, name: object, choices: object, error: type[UnknownNameError] = UnknownNameError
) -> UnknownNameError:
    """The one message for an unknown name: ``unknown <what> '<name>'; choose one of a, b, c``.

    ``error``: a subclass for a package whose callers catch its own error family as well
    (``ser.manifests`` raises one that is also a ``ManifestError``)."""
    listed = ", ".join(str(choice) for choice in choices)  # type: ignore[attr-defined]
    return error(f"unknown {what} {name!r}; choose one of {listed}")


WRITE_ERRNOS = {
    28: "no space left on the device",
    122: "disk quota exceeded",
    13: "permission denied",
    1: "operation not permitted",
    30: "read-only file system",
    5: "input/output error",
}
"""errno -> plain words, for the write failures a user can fix (ENOSPC, EDQUOT, EACCES, EPERM, EROFS, EIO)."""


def write_failure(err: OSError, path: object, kept: str) -> str:
    """One line for a failed write: what failed where, in plain words, what is kept and what to do.

    numpy reports a short write as ``OSError("N requested and M written")`` without an errno; a
    full disk is the usual cause, which the free space of the target tells."""
    import shutil
    from pathlib import Path

    reason = WRITE_ERRNOS.get(err.errno or -1)
    if reason is None:
        existing = Path(str(path))
        while not existing.exists() and existing != existing.parent:  # the half-written file may be gone
            existing = existing.parent
        try:
            free = shutil.disk_usage(existing).free
        except OSError:
            free = None
        reason = "no space left on the device" if free is not None and free < (64 << 20) else str(err)
    return (
        f"writing {path} failed: {reason}. {kept}; free space (or fix the permissions) and run the same command again"
    )
