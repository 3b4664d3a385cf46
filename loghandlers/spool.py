"""Batches that could not be delivered, kept on disk until they can be; and the policy
that decides what goes there (:class:`Keeper`).

A spool is a directory named by a hash of the handler's identity (service + url + bucket /
table / namespace), so any handler with the same identity replays it, in this process or
the next, and no other handler ever does. Files hold events only, never credentials: the
replaying handler encodes them again with its own. Each file is written 0600 under a
temporary name and renamed into place, so a crash leaves either a whole batch or none.
Files are named ``<time_ns>-<pid>-<seq>.json`` and replayed oldest first. Replay claims a
file by renaming it (``.sending.<pid>-<n>``) so two processes never send the same one; a
batch that ``spool_mode="always"`` writes before sending it is *live*
(``.live.<pid>-<n>``) until its fate is known, so no other sender replays it meanwhile.
Claims and live files left by a dead process are returned at the next start.

Directories: every directory we create is made 0700 whatever the umask; the spool root and
each identity's directory must be real directories (not symlinks) owned by us, and no parent
may be another user's symlink or another user's directory that others may write to, or the
spool is refused (reported once, naming ``spool_dir``) and the handler works without one.

Threading: a ``Spool`` and its ``Keeper`` are used by one handler's worker thread; after
the worker has finished (a closed handler), by callers of the closed handler, one at a time
under the handler's lock for late records. ``summary()`` may be called from any thread (it
only lists the directory).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import time
from typing import Any, Mapping

from .exporter import Exporter, ExportResult
from .ledger import Ledger
from .records import dumps
from .status import Reporter, Stats

_INSTANCES = itertools.count()
FORMAT = "loghandlers-spool/1"
SUFFIX = ".json"
CLAIM = ".sending."
LIVE = ".live."
#: seconds between looks at a spool that another sender is replaying
SPOOL_POLL = 0.25
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
IDENTITY_FILE = "identity.json"


def identity_key(service: str, identity: str) -> str:
    return hashlib.sha256(f"{service}\n{identity}".encode()).hexdigest()[:24]


#: prefix of a file being written: ``.tmp-<writer pid>-<final name>``
TEMPORARY = ".tmp-"


def write_atomically(directory: str, name: str, data: bytes) -> None:
    """``directory/name`` holds ``data`` whole or not at all, even after a crash: a private
    temporary file (which a later process removes if its writer died), flushed to disk,
    then renamed into place. Every file of a spool is written this way."""
    temporary = os.path.join(directory, f"{TEMPORARY}{os.getpid()}-{name}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, os.path.join(directory, name))
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def parse_owned(name: str) -> tuple[str, str, str] | None:
    """``(base name, owner, owner's pid)`` of a batch a process has claimed for a replay
    (``<base>CLAIM<pid>-<instance>``) or is sending live (``<base>LIVE<pid>-<instance>.json``);
    None for any other file. The one place these names are read."""
    marker = CLAIM if CLAIM in name else LIVE if LIVE in name else None
    if marker is None:
        return None
    base, _, owner = name.rpartition(marker)
    if marker == LIVE and owner.endswith(SUFFIX):
        owner = owner[: -len(SUFFIX)]
    return base, owner, owner.partition("-")[0]


class SpoolError(Exception):
    pass


class SpoolUnusable(Exception):
    """The spool directory can't be used safely (the message names ``spool_dir``)."""


class Spool:
    """One identity's directory of undelivered batches."""

    def __init__(
        self,
        root: str,
        service: str,
        identity: str,
        max_bytes: int,
        label: str = "",
        identity_options: Mapping[str, Any] | None = None,
    ):
        self.service = service
        self.label = label  # for people: the endpoint without credentials or query
        self.identity_options = dict(identity_options or {})  # e.g. bucket_key, table
        self.root = os.path.abspath(root)
        self.directory = os.path.join(self.root, f"{service}-{identity_key(service, identity)}")
        self.max_bytes = max_bytes
        self._seq = itertools.count()
        self._instance = next(_INSTANCES)
        self._ready = False

    def __repr__(self) -> str:
        return f"<Spool {self.directory!r}>"

    # ------------------------------------------------------------------ setup
    def open(self) -> None:
        """Make (or check) the directories; raises :class:`SpoolUnusable` if we can't use
        them safely. Returns the claims and live files of dead processes to the queue."""
        if self._ready:
            return
        try:
            _check_ancestors(self.root)
            self._private_directory(self.root, parents=True)
            self._private_directory(self.directory, parents=False)
            self._describe()
            self._return_abandoned_claims()
        except SpoolUnusable:
            raise
        except OSError as exc:
            raise SpoolUnusable(
                f"spool_dir={self.root!r} can't be used: {exc.strerror or exc}"
            ) from None
        self._ready = True

    def _private_directory(self, path: str, parents: bool) -> None:
        """Create ``path`` (and, with ``parents``, its missing parents) 0700, or check that
        the existing one is a real directory of ours."""
        missing = []
        probe = path
        while not os.path.lexists(probe) and (parents or probe == path):
            missing.append(probe)
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                continue  # made meanwhile by someone else: checked below like any other
            _fchmod_private(directory)  # mkdir's mode is narrowed by the umask, never widened
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise SpoolUnusable(f"spool_dir: {path!r} is a symlink we did not make; not used")
        if not stat.S_ISDIR(info.st_mode):
            raise SpoolUnusable(f"spool_dir: {path!r} is not a directory; not used")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise SpoolUnusable(
                f"spool_dir: {path!r} belongs to uid {info.st_uid}, not to us; not used"
            )
        if path == self.directory and stat.S_IMODE(info.st_mode) & 0o077:
            _fchmod_private(path)

    def _describe(self) -> None:
        """identity.json tells a person whose spool this is; the directory name (a hash of
        the identity) is what handlers match on, so no credential is ever written."""
        path = os.path.join(self.directory, IDENTITY_FILE)
        if os.path.exists(path):
            return
        data = json.dumps(
            {"service": self.service, "endpoint": self.label, "identity": self.identity_options}
        ).encode()
        write_atomically(self.directory, IDENTITY_FILE, data)

    def _return_abandoned_claims(self) -> None:
        for name in os.listdir(self.directory):
            if name.startswith(TEMPORARY):  # a write cut short by a crash: half a file
                writer = name[len(TEMPORARY) :].partition("-")[0]
                if writer.isdigit() and not _pid_alive(int(writer)):
                    self.remove(name)
                continue
            owned = parse_owned(name)
            if owned is None:
                continue
            base, _, pid = owned
            if pid.isdigit() and not _pid_alive(int(pid)):
                try:
                    os.replace(
                        os.path.join(self.directory, name), os.path.join(self.directory, base)
                    )
                except OSError:
                    pass

    # ------------------------------------------------------------------ write
    def write(self, events: list, live: bool = False) -> tuple[str, int]:
        """Store one batch; returns (file name, events dropped to stay under the size cap).
        ``live``: the batch is about to be sent (``spool_mode="always"``); no other sender
        replays it until :meth:`settle_live` says what became of it."""
        self.open()
        data = self._encode(events)
        dropped = self._make_room(len(data))
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{SUFFIX}"
        if live:
            name = f"{name}{LIVE}{self._claim_owner()}{SUFFIX}"
        self._write_file(name, data)
        return name, dropped

    def _encode(self, events: list) -> bytes:
        header = {"format": FORMAT, "service": self.service, "events": len(events)}
        return (json.dumps(header) + "\n" + dumps(events) + "\n").encode("utf-8")

    def settle_live(self, name: str, unsent: list, total: int) -> bool:
        """What became of a live batch: delivered (``unsent`` empty: the file goes), or some
        of it still to deliver (the file keeps just those and joins the queue). False if
        the file could not be kept."""
        path = os.path.join(self.directory, name)
        if not unsent:
            self.remove(path)
            return True
        base = os.path.join(self.directory, (parse_owned(name) or (name,))[0])
        try:
            if len(unsent) != total:
                self._write_file(os.path.basename(base), self._encode(unsent))
                self.remove(path)
            else:
                os.replace(path, base)
        except OSError:
            return False
        return True

    def _write_file(self, name: str, data: bytes) -> None:
        write_atomically(self.directory, name, data)

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
        except OSError:
            return []
        return sorted(
            n
            for n in names
            if n.endswith(SUFFIX) and not n.startswith(".") and n != IDENTITY_FILE and LIVE not in n
        )

    def queue(self) -> list:
        """``(name, busy)`` for every batch, oldest first; ``busy``: another live sender
        has claimed it, so nothing after it may be sent before it is done."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        mine = self._claim_owner()
        entries = []
        for name in names:
            if name.startswith(".") or name == IDENTITY_FILE:
                continue
            if LIVE in name:
                continue  # being sent by its writer; returned to the queue if it died
            if name.endswith(SUFFIX):
                entries.append((name, False))
            elif CLAIM in name:
                base, owner, pid = parse_owned(name) or ("", "", "")
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
        except OSError:
            return False
        mine = self._claim_owner()
        for name in names:
            if CLAIM not in name:
                continue
            _, owner, pid = parse_owned(name) or ("", "", "")
            if owner != mine and pid.isdigit() and _pid_alive(int(pid)):
                return True
        return False

    def _claim_owner(self) -> str:
        """pid-instance: tells apart two handlers of one identity in the same process."""
        return f"{os.getpid()}-{self._instance}"

    def claim(self, name: str) -> tuple[str, list] | None:
        """Take a batch for sending; None if another process took it first or it is bad."""
        self.open()
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
        write_atomically(self.directory, os.path.basename(claimed), self._encode(events))

    def release(self, claimed: str) -> None:
        """Put a claimed batch back (its send failed)."""
        base = os.path.join(self.directory, (parse_owned(os.path.basename(claimed)) or ("",))[0])
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


def _check_ancestors(path: str) -> None:
    """A symlink on the way to the spool root is fine if root or we made it (``/var/run``,
    a home on another disk), not if another user did: they could point it elsewhere. Nor
    is a directory on the way that another user owns and others may write to (unless
    sticky, as /tmp): our directory in it could be swapped for theirs after we checked."""
    mine = os.geteuid() if hasattr(os, "geteuid") else None
    probe = os.path.dirname(path)
    while True:
        try:
            info = os.lstat(probe)
        except OSError:
            info = None
        if info is not None and info.st_uid not in (0, mine):
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                raise SpoolUnusable(
                    f"spool_dir: {probe!r} is a symlink of uid {info.st_uid}; not followed"
                )
            if mode & 0o022 and not mode & stat.S_ISVTX:
                raise SpoolUnusable(
                    f"spool_dir: {probe!r} belongs to uid {info.st_uid} and others may "
                    "write to it; not used"
                )
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent


def _fchmod_private(path: str) -> None:
    """chmod 0700 through a descriptor opened without following a symlink."""
    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    try:
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


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


class Keeper:
    """The spool policy, in one place: what goes to disk, when, and what comes back.

    - ``spool_mode="always"``: a batch is written (live) before it is sent, and its file
      goes away once it is delivered; what is still unsent stays on disk.
    - ``"fallback"``: only what the exporter could not deliver is written.
    - While a hold is open, or older batches wait on disk, new batches go straight to disk
      behind them, and the spool is replayed oldest-first before anything new is sent.
    - Without a usable spool, what can't be delivered is counted as failed and reported.

    Every batch a keeper ships settles in the ledger once, in one step, after its fate is
    known (so ``stats()`` never sees it both in flight and delivered or spooled).
    """

    def __init__(
        self,
        spool: Spool | None,
        always: bool,
        exporter: Exporter,
        ledger: Ledger,
        stats: Stats,
        reporter: Reporter,
    ):
        self.spool = spool
        self.always = always
        self.exporter = exporter
        self.ledger = ledger
        self.stats = stats
        self.reporter = reporter
        self.pending = False  # batches may wait on disk (ours or an earlier process's)

    # ----------------------------------------------------------------- setup
    def start(self) -> None:
        """Open the spool and look for batches left on disk (by the handler, at start)."""
        if self.spool is None:
            return
        try:
            self.spool.open()
            self.pending = self.spool.has_pending()
        except SpoolUnusable as exc:
            self._lose_spool(str(exc))

    def _lose_spool(self, why: str) -> None:
        self.spool = None
        self.pending = False
        self.reporter.error(
            "spool_dir",
            f"{why}; going on without a spool: undeliverable batches are counted as failed",
        )

    # ----------------------------------------------------------------- a batch's trip
    def ship(self, events: list) -> ExportResult:
        """Deliver ``events`` (records the worker took), keep what could not be, settle."""
        if self.spool is not None and (
            self.exporter.held() or (self.pending and not self.replay())
        ):
            return self.keep(events)  # behind the hold, or behind older batches on disk
        live = self._write(events, live=True) if self.always and self.spool else None
        result = self.exporter.export(events)
        unsent = list(result.unsent)
        if live is not None:
            kept = self.spool is not None and self.spool.settle_live(live, unsent, len(events))
            if unsent and not kept:
                self.reporter.error("spool_write", "cannot keep a live batch", len(unsent))
        elif unsent:
            kept = self._write(unsent) is not None
        else:
            kept = False
        return self._settle(result, unsent, kept)

    def keep(self, events: list) -> ExportResult:
        """Spool ``events`` without trying them (a hold, older batches first, or past a
        close() deadline); settle them as spooled, or failed without a spool."""
        kept = self._write(events) is not None
        return self._settle(ExportResult("failed", unsent=tuple(events)), list(events), kept)

    def _settle(self, result: ExportResult, unsent: list, kept: bool) -> ExportResult:
        spooled = len(unsent) if kept else 0
        self.ledger.settle(
            sent=result.delivered,
            rejected=result.rejected,
            spooled=spooled,
            failed=len(unsent) - spooled,
        )
        if spooled:
            self.pending = True
            self._tell_where(spooled)
        if not unsent:
            return result
        return ExportResult(
            "spooled" if kept else "failed",
            result.delivered,
            result.rejected,
            result.reasons,
            result.status,
            result.reply_json,
        )

    def _tell_where(self, count: int) -> None:
        """Say on stderr where undelivered records went and how they come back."""
        spool = self.spool
        if spool is None:
            return
        self.reporter.notice(
            "spooled",
            f"{count} records kept on disk in {spool.directory}: they are sent, oldest "
            "first, when the endpoint answers again (by this process or the next one with "
            "the same url and spool_dir), or now with: "
            f"python -m loghandlers replay --spool-dir {spool.root}",
        )

    def _write(self, events: list, live: bool = False) -> str | None:
        """A file holding ``events``, or None (reported) when there is no usable spool."""
        if self.spool is None:
            if not live:
                self.reporter.error("failed", "no spool_dir: undeliverable batch lost", len(events))
            return None
        try:
            name, dropped = self.spool.write(events, live=live)
        except SpoolUnusable as exc:
            self._lose_spool(str(exc))
            return self._write(events, live)
        except (OSError, ValueError) as exc:
            self.reporter.error("spool_write", f"cannot write spool: {exc}", len(events))
            return None
        if dropped:
            self.stats.add(spool_dropped=dropped)
            self.reporter.error("spool_full", f"spool over its size cap: {dropped} oldest dropped")
        return name

    # ----------------------------------------------------------------- replay
    def replay_due(self) -> bool:
        return self.pending and self.spool is not None and not self.exporter.held()

    def poll_after(self) -> float | None:
        """Seconds until the spool is worth another look (another sender's claim ends
        soon), or None when nothing waits."""
        return SPOOL_POLL if self.replay_due() else None

    def replay(self) -> bool:
        """Send spooled batches oldest-first; True once the spool is empty."""
        spool = self.spool
        if spool is None:
            self.pending = False
            return True
        for name, busy in spool.queue():
            if busy:
                return False  # an older batch is being sent by another sender: stay behind
            if self.exporter.held():
                return False
            try:
                claimed = spool.claim(name)
            except SpoolError as exc:
                self.reporter.error("spool_corrupt", str(exc))
                continue
            except SpoolUnusable as exc:
                self._lose_spool(str(exc))
                return True
            if claimed is None:
                continue
            path, events = claimed
            result = self.exporter.export(events, replay=True)
            self.stats.add(replayed=result.delivered, replay_rejected=result.rejected)
            if not result.unsent:
                spool.remove(path)
                continue
            try:
                if len(result.unsent) != len(events):
                    spool.rewrite(path, list(result.unsent))
            finally:
                spool.release(path)
            return False
        if spool.claimed_elsewhere():
            return False  # another process is sending older batches: stay behind them
        self.pending = False
        return True
