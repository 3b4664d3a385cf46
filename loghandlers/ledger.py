"""Where every accepted record is: the books behind ``stats()``.

``emitted == sent + rejected + failed + spooled + dropped + queued + in_flight`` must hold at
every instant ``stats()`` can observe, so every move between those columns happens under
one lock, in one step: the worker takes records out of the buffer (queued -> in flight), a
batch is settled (in flight -> sent/rejected/failed/spooled), a closer gives up on a worker
stuck in user code (in flight and queued -> failed). ``dropped`` is what fell out of the
full buffer: emitted, never taken, no longer queued.

Threading:

- ``lock`` (an RLock: a signal handler on the main thread may read or close while the
  main thread is inside it) guards ``taken``, ``settled``, ``counts`` and ``given_up``.
  No user code and no I/O ever runs under it.
- The handler's ``emitted`` counter is written by callers without this lock (``emit`` must
  stay cheap; a caller bumps it before appending to the buffer), except for records that
  enter the books directly (``export_now``, records after ``close()``), which bump it under
  this lock through :meth:`Ledger.adopt`. :meth:`Ledger.snapshot` reads the buffer's length
  before ``emitted``, so ``dropped`` is never negative.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

OUTCOMES = ("sent", "rejected", "failed", "spooled")


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.taken = 0  # records that left the buffer (or entered the books without it)
        self.settled = 0  # of those, records whose fate is decided
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.extra_emitted = 0  # records counted here, not by the caller's emit
        self.given_up = False  # the closer stopped waiting for a stuck worker
        self.dropped_late = 0  # logged after close() with nowhere to go

    def take(self, buffer: deque, limit: int) -> list:
        """Up to ``limit`` records from the buffer's head, now in flight."""
        out: list = []
        popleft = buffer.popleft
        with self.lock:
            if self.given_up:
                return out
            for _ in range(limit):
                try:
                    out.append(popleft())
                except IndexError:
                    break
            self.taken += len(out)
        return out

    def adopt(self, count: int) -> bool:
        """``count`` records enter the books in flight without passing the buffer
        (``export_now``, records logged after ``close()``); False once given up."""
        with self.lock:
            if self.given_up:
                return False
            self.extra_emitted += count
            self.taken += count
            return True

    def drop_late(self, count: int) -> None:
        """Records logged after ``close()`` that no handler took over and no spool kept."""
        with self.lock:
            self.extra_emitted += count
            self.dropped_late += count

    def settle(self, **outcomes: int) -> bool:
        """In flight -> the given outcome columns, in one step. False (and nothing moves)
        when the closer gave up on this worker: the records were counted as failed."""
        with self.lock:
            if self.given_up:
                return False
            for name, amount in outcomes.items():
                if amount:
                    self.counts[name] += amount
                    self.settled += amount
            return True

    def give_up(self, buffer: deque) -> int:
        """The worker is stuck (user code in conversion): count everything it holds and
        everything still buffered as failed, and ignore whatever it settles later."""
        with self.lock:
            if self.given_up:
                return 0
            self.given_up = True
            left = len(buffer)
            buffer.clear()
            self.taken += left
            lost = self.taken - self.settled
            self.counts["failed"] += lost
            self.settled = self.taken
            return lost

    def idle(self) -> bool:
        """Is nothing in flight?"""
        return self.taken == self.settled

    def snapshot(self, buffer: deque, emitted: Callable[[], int]) -> dict:
        """The ledger's columns at one instant."""
        with self.lock:
            queued = len(buffer)
            total = emitted() + self.extra_emitted
            out = dict(self.counts)
            out["emitted"] = total
            out["queued"] = queued
            out["in_flight"] = self.taken - self.settled
            out["dropped"] = max(0, total - self.taken - queued - self.dropped_late)
            out["dropped"] += self.dropped_late
        return out
