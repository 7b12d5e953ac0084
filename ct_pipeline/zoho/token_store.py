"""Zoho access tokens shared by the processes of one deployment.

Zoho Accounts issues at most 10 access tokens per refresh token in 10 minutes, then refuses
every refresh for the rest of the window (research/zoho.md section 1). Dagster runs each job
in a process of its own, and the sensor daemon evaluates ticks in yet another, so a process-wide
cache is not enough: a burst of runs would exhaust the window. The store keeps the current token
in a file per credential set, so a new process uses the token an earlier one obtained, and a
lock file makes sure only one process refreshes at a time.

An access token is a secret that lives an hour. The folder is created with mode 0700 and each
file with mode 0600; the file name is a hash of the credentials, never the credentials.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True)
class StoredToken:
    """A token as the store keeps it: its expiry is wall-clock time, the same in every process."""

    value: str
    api_domain: str | None
    expires_at_epoch: float

    def seconds_left(self) -> float:
        return self.expires_at_epoch - time.time()


class SharedTokenStore:
    """One folder of token files, one per credential set (named by `key`, a hex digest)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def read(self, key: str) -> StoredToken | None:
        """The stored token for `key`, or None when there is none or it cannot be read."""
        try:
            data = json.loads(self._path(key).read_text())
            return StoredToken(
                value=str(data["value"]),
                api_domain=data.get("api_domain"),
                expires_at_epoch=float(data["expires_at_epoch"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, key: str, token: StoredToken) -> None:
        """Replace the stored token atomically, readable by this user only."""
        self._ensure_folder()
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{key[:12]}.")
        try:
            os.fchmod(handle, FILE_MODE)
            with os.fdopen(handle, "w") as file:
                json.dump(
                    {
                        "value": token.value,
                        "api_domain": token.api_domain,
                        "expires_at_epoch": token.expires_at_epoch,
                    },
                    file,
                )
            os.replace(temporary, self._path(key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def forget(self, key: str, value: str) -> None:
        """Remove the stored token for `key` if it is still `value` (the API refused it)."""
        with self.locked(key):
            stored = self.read(key)
            if stored is not None and stored.value == value:
                with contextlib.suppress(FileNotFoundError):
                    self._path(key).unlink()

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold the refresh lock for `key` across processes."""
        self._ensure_folder()
        descriptor = os.open(self.folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def _ensure_folder(self) -> None:
        self.folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"
