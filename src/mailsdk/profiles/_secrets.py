"""Secrets a profile names: an environment variable, or a file only its owner can read.

Layer: L6b (profiles, private). Reads the variable or the file when a builder is made; the
value is wrapped in a :class:`~mailsdk.Secret` at once and never appears in an error.
"""

from __future__ import annotations

import os
import pathlib
import stat

from mailsdk._secret import Secret
from mailsdk.errors import ConfigurationError

__all__ = ["read_secret_file", "secret_from"]


def read_secret_file(path: str) -> Secret:
    """Read a secret from a file that only its owner (this user) can read.

    The file is opened without following a symbolic link and checked through the open
    descriptor, so the file checked is the file read (a symlink swapped in between cannot
    point the read elsewhere).

    Raises:
        ConfigurationError: missing file, a symbolic link, not a regular file, owned by another
            user, or readable/writable by group or others.
    """
    target = pathlib.Path(path).expanduser()
    try:
        fd = os.open(
            target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
        )
    except FileNotFoundError:
        raise ConfigurationError(f"secret file {target} does not exist") from None
    except OSError as exc:
        if target.is_symlink():
            raise ConfigurationError(
                f"secret file {target} is a symbolic link; point the profile at the file itself"
            ) from None
        raise ConfigurationError(f"cannot open secret file {target}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"secret file {target} is not a regular file")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise ConfigurationError(f"secret file {target} belongs to another user")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"secret file {target} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):03o}); run: chmod 600 {target}"
            )
        try:
            text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read secret file {target} ({type(exc).__name__})"
            ) from None
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigurationError(f"secret file {target} is empty")
    return Secret(value)


def secret_from(env_name: str | None, file_name: str | None, what: str) -> Secret | None:
    """A secret from the variable ``env_name`` or the file ``file_name`` (variable first).

    Raises:
        ConfigurationError: the variable is named but not set, or the file is unsafe.
    """
    if env_name:
        value = os.environ.get(env_name)
        if value:
            return Secret(value)
        if not file_name:
            raise ConfigurationError(f"{what}: environment variable {env_name} is not set")
    if file_name:
        return read_secret_file(file_name)
    return None
