"""Batches that could not be delivered, kept on disk until they can be.

A spool is a directory named by a hash of the handler's identity (service + url + bucket /
table / namespace), so any handler with the same identity replays it, in this process or
the next, and no other handler ever does. Files hold events only, never credentials: the
replaying handler encodes them again with its own. Each file is written 0600 under a
temporary name and renamed into place, so a crash leaves either a whole batch or none.
Files are named ``<time_ns>-<pid>-<seq>.json`` and replayed oldest first. Replay claims a
file by renaming it (``.sending.<pid>-<n>``) so two processes never send the same one; claims
left by a dead process are returned at the next start.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from typing import Any

from .records import dumps

_INSTANCES = itertools.count()
FORMAT = "loghandlers-spool/1"
SUFFIX = ".json"
CLAIM = ".sending."
IDENTITY_FILE = "identity.json"


def identity_key(service: str, identity: str) -> str:
    return hashlib.sha256(f"{service}\n{identity}".encode()).hexdigest()[:24]


class SpoolError(Exception):
    pass


class Spool:
    """One identity's directory of undelivered batches."""

    def __init__(self, root: str, service: str, identity: str, max_bytes: int, label: str = ""):
        self.service = service
        self.label = label  # for people: the endpoint without credentials
        self.directory = os.path.join(root, f"{service}-{identity_key(service, identity)}")
        self.max_bytes = max_bytes
        self._seq = itertools.count()
        self._instance = next(_INSTANCES)
        self._ready = False

    def __repr__(self) -> str:
        return f"<Spool {self.directory!r}>"

    # ------------------------------------------------------------------ setup
    def _ensure(self) -> None:
        if self._ready:
            return
        os.makedirs(os.path.dirname(self.directory), mode=0o700, exist_ok=True)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._describe()
        self._return_abandoned_claims()
        self._ready = True

    def _describe(self) -> None:
        """identity.json tells a person whose spool this is; the directory name (a hash of
        the identity) is what handlers match on, so no credential is ever written."""
        path = os.path.join(self.directory, IDENTITY_FILE)
        if os.path.exists(path):
            return
        data = json.dumps({"service": self.service, "endpoint": self.label}).encode()
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)

    def _return_abandoned_claims(self) -> None:
        for name in os.listdir(self.directory):
            if name.startswith(".tmp-"):  # a write cut short by a crash: half a batch
                writer = name.split("-")[2] if name.count("-") >= 3 else ""
                if writer.isdigit() and not _pid_alive(int(writer)):
                    self.remove(name)
                continue
            if CLAIM not in name:
                continue
            base, _, owner = name.rpartition(CLAIM)
            pid = owner.partition("-")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                try:
                    os.replace(
                        os.path.join(self.directory, name), os.path.join(self.directory, base)
                    )
                except OSError:
                    pass

    # ------------------------------------------------------------------ write
    def write(self, events: list) -> tuple[str, int]:
        """Store one batch; returns (file name, events dropped to stay under the size cap)."""
        self._ensure()
        header = {"format": FORMAT, "service": self.service, "events": len(events)}
        data = (json.dumps(header) + "\n" + dumps(events) + "\n").encode("utf-8")
        dropped = self._make_room(len(data))
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{SUFFIX}"
        temporary = os.path.join(self.directory, f".tmp-{name}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, os.path.join(self.directory, name))
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        return name, dropped

    def _make_room(self, incoming: int) -> int:
        """Delete the oldest batches until ``incoming`` fits; returns events lost."""
        if self.max_bytes <= 0:
            return 0
        files = self._files_with_sizes()
        total = sum(size for _, size in files)
        dropped = 0
        for name, size in files:
            if total + incoming <= self.max_bytes:
                break
            dropped += self._count_events(name)
            try:
                os.unlink(os.path.join(self.directory, name))
                total -= size
            except OSError:
                pass
        return dropped

    def _files_with_sizes(self) -> list:
        out = []
        for name in self.pending():
            try:
                out.append((name, os.path.getsize(os.path.join(self.directory, name))))
            except OSError:
                pass
        return out

    def _count_events(self, name: str) -> int:
        try:
            with open(os.path.join(self.directory, name), encoding="utf-8") as handle:
                return int(json.loads(handle.readline()).get("events", 0))
        except (OSError, ValueError, AttributeError):
            return 0

    # ------------------------------------------------------------------ read
    def pending(self) -> list:
        """Whole batches waiting, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(
            n for n in names if n.endswith(SUFFIX) and not n.startswith(".") and n != IDENTITY_FILE
        )

    def queue(self) -> list:
        """``(name, busy)`` for every batch, oldest first; ``busy``: another live sender
        has claimed it, so nothing after it may be sent before it is done."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        mine = self._claim_owner()
        entries = []
        for name in names:
            if name.startswith(".") or name == IDENTITY_FILE:
                continue
            if name.endswith(SUFFIX):
                entries.append((name, False))
            elif CLAIM in name:
                base, _, owner = name.rpartition(CLAIM)
                pid = owner.partition("-")[0]
                if owner != mine and pid.isdigit() and _pid_alive(int(pid)):
                    entries.append((base, True))
        return sorted(entries)

    def has_pending(self) -> bool:
        return bool(self.pending()) or self.claimed_elsewhere()

    def claimed_elsewhere(self) -> bool:
        """Is another live process sending one of these batches right now? Then our new
        batches must queue behind it, or one source's events would arrive out of order."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return False
        mine = self._claim_owner()
        for name in names:
            if CLAIM not in name:
                continue
            owner = name.rpartition(CLAIM)[2]
            pid = owner.partition("-")[0]
            if owner != mine and pid.isdigit() and _pid_alive(int(pid)):
                return True
        return False

    def _claim_owner(self) -> str:
        """pid-instance: tells apart two handlers of one identity in the same process."""
        return f"{os.getpid()}-{self._instance}"

    def claim(self, name: str) -> tuple[str, list] | None:
        """Take a batch for sending; None if another process took it first or it is bad."""
        self._ensure()
        source = os.path.join(self.directory, name)
        claimed = f"{source}{CLAIM}{self._claim_owner()}"
        try:
            os.replace(source, claimed)
        except OSError:
            return None
        try:
            with open(claimed, encoding="utf-8") as handle:
                header = json.loads(handle.readline())
                events = json.loads(handle.read())
            if header.get("format") != FORMAT or not isinstance(events, list):
                raise ValueError("not a spool file")
        except (OSError, ValueError) as exc:
            os.replace(claimed, os.path.join(self.directory, f".bad-{name}"))
            raise SpoolError(f"unreadable spool file {name}: {exc}") from None
        return claimed, events

    def rewrite(self, claimed: str, events: list) -> None:
        """Replace a claimed batch's events (some were rejected for good), keeping its place."""
        header = {"format": FORMAT, "service": self.service, "events": len(events)}
        data = (json.dumps(header) + "\n" + dumps(events) + "\n").encode("utf-8")
        temporary = f"{claimed}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, claimed)

    def release(self, claimed: str) -> None:
        """Put a claimed batch back (its send failed)."""
        base = claimed.rpartition(CLAIM)[0]
        try:
            os.replace(claimed, base)
        except OSError:
            pass

    def remove(self, path_or_name: str) -> None:
        path = path_or_name
        if os.sep not in path_or_name:
            path = os.path.join(self.directory, path_or_name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def summary(self) -> dict[str, Any]:
        files = self._files_with_sizes()
        return {"files": len(files), "bytes": sum(size for _, size in files)}


def read_identity(directory: str) -> dict | None:
    """What identity.json in a spool directory says, or None."""
    try:
        with open(os.path.join(directory, IDENTITY_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
