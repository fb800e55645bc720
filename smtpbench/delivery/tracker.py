"""What the run sent and what arrived at the far end: the delivery accounting.

The load engine calls :meth:`Tracker.sent` when a message's data is written
and :meth:`Tracker.replied` when the reply to its final dot is parsed (the
hot path: a few array stores per message).  The ends that see messages
arrive (the delivery sink's reports, a watched Maildir or mbox) call
:meth:`Tracker.arrived` with the id and the arrival time.  The first copy of
a message records two phases in the run's recorder:

* ``delivery``: from the final 250 to the arrival;
* ``end_to_end``: from the session's start (its intended start in open runs) to the arrival.

Message numbers are the run's sequential numbers, so the state lives in flat
arrays indexed by number (about 30 octets per message) rather than dicts.
Arrivals may be processed before the 250 is (a server that relays at once,
or the sink itself as the server): then the phases are recorded when the
reply comes, and ``delivery`` is 0 (counted in ``arrived_before_reply``).
"""

from __future__ import annotations

import time
from array import array
from typing import Any

from smtpbench.delivery.ids import MessageIds, parse_number
from smtpbench.metrics.recorder import Recorder

#: Message states.
UNSENT, SENT, ACCEPTED, REJECTED = 0, 1, 2, 3
_CHUNK = 1 << 16
#: Ids listed per problem kind in delivery-problems.txt (the counts are always complete).
MAX_LISTED = 100_000


class Tracker:
    """Delivery state of one run's messages (one process, one event loop)."""

    def __init__(self, ids: MessageIds, recorder: Recorder) -> None:
        self.ids = ids
        self.recorder = recorder
        #: epoch seconds = perf_counter seconds + offset
        self.offset = time.time() - time.perf_counter()
        self.state = bytearray()
        self.rcpts = array("H")
        self.started_at = array("d")
        self.accepted_at = array("d")
        self.arrived_at = array("d")
        self.copies = array("H")
        self.top = 0  # highest message number seen
        self.accepted = 0
        self.delivered = 0  # accepted messages with at least one copy arrived
        self.counts: dict[str, int] = {
            "unexpected": 0,
            "rejected_but_delivered": 0,
            "arrived_before_reply": 0,
        }

    def _grow(self, n: int) -> None:
        while n >= len(self.state):
            self.state.extend(bytes(_CHUNK))
            self.rcpts.frombytes(bytes(2 * _CHUNK))
            self.copies.frombytes(bytes(2 * _CHUNK))
            for times in (self.started_at, self.accepted_at, self.arrived_at):
                times.frombytes(bytes(8 * _CHUNK))

    def sent(self, n: int, rcpts: int, started: float) -> None:
        """Message ``n`` with ``rcpts`` recipients, of a session started at ``started`` (perf s), was written."""
        if n >= len(self.state):
            self._grow(n)
        self.state[n] = SENT
        self.rcpts[n] = min(rcpts, 65535)
        self.started_at[n] = started
        if n > self.top:
            self.top = n

    def recipients(self, n: int, rcpts: int) -> None:
        """Message ``n`` (already :meth:`sent`) has ``rcpts`` accepted recipients: more copies are duplicates."""
        self.rcpts[n] = min(rcpts, 65535)

    def replied(self, n: int, accepted: bool, when: float) -> None:
        """The reply to message ``n``'s final dot came at ``when`` (perf s); ``accepted``: it was 2xx."""
        if not accepted:
            self.state[n] = REJECTED
            if self.copies[n]:
                self.counts["rejected_but_delivered"] += 1
            return
        self.state[n] = ACCEPTED
        self.accepted_at[n] = when
        self.accepted += 1
        if self.copies[n]:  # it arrived before we parsed the 250
            self.delivered += 1
            self.counts["arrived_before_reply"] += 1
            self._record(n, max(self.arrived_at[n], when))

    def arrived(self, ident: str | None, epoch: float, copies: int = 1) -> None:
        """``copies`` copies (one per recipient delivered together) of message ``ident`` arrived at ``epoch``."""
        n = parse_number(ident, self.ids.prefix) if ident else None
        if n is None or not 0 < n <= self.top or self.state[n] == UNSENT:
            self.counts["unexpected"] += 1
            return
        first = not self.copies[n]
        self.copies[n] = min(self.copies[n] + max(copies, 1), 65535)
        if not first:
            return
        when = epoch - self.offset
        self.arrived_at[n] = when
        state = self.state[n]
        if state == ACCEPTED:
            self.delivered += 1
            if when < self.accepted_at[n]:
                self.counts["arrived_before_reply"] += 1
                when = self.accepted_at[n]
            self._record(n, when)
        elif state == REJECTED:
            self.counts["rejected_but_delivered"] += 1

    def _record(self, n: int, when: float) -> None:
        rec = self.recorder
        rec.record("delivery", max(int((when - self.accepted_at[n]) * 1_000_000), 0))
        rec.record("end_to_end", max(int((when - self.started_at[n]) * 1_000_000), 0))

    @property
    def outstanding(self) -> int:
        """Messages accepted with 250 that have not arrived yet."""
        return self.accepted - self.delivered

    def problems(self) -> tuple[list[int], list[int], int, int]:
        """``(lost, duplicated, lost_total, duplicated_total)``: message numbers and totals.

        ``lost``: accepted, never arrived; ``duplicated``: more copies arrived
        than the message had recipients.  Lists stop at :data:`MAX_LISTED`.
        """
        lost: list[int] = []
        dup: list[int] = []
        n_lost = n_dup = 0
        state, copies, rcpts = self.state, self.copies, self.rcpts
        for n in range(1, self.top + 1):
            st = state[n]
            if st == UNSENT:
                continue
            c = copies[n]
            if st == ACCEPTED and c == 0:
                n_lost += 1
                if len(lost) < MAX_LISTED:
                    lost.append(n)
            elif c > rcpts[n]:
                n_dup += 1
                if len(dup) < MAX_LISTED:
                    dup.append(n)
        return lost, dup, n_lost, n_dup

    def unacknowledged(self) -> int:
        """Messages that arrived although their final reply never came (session cut after the data)."""
        return sum(1 for n in range(1, self.top + 1) if self.state[n] == SENT and self.copies[n])

    def summary(self) -> dict[str, Any]:
        """The ``delivery`` counts of ``summary.json`` (see README, "Delivery latency")."""
        lost, dup, n_lost, n_dup = self.problems()
        return {
            "accepted": self.accepted,
            "delivered": self.delivered,
            "lost": n_lost,
            "duplicated": n_dup,
            "unexpected": self.counts["unexpected"],
            "rejected_but_delivered": self.counts["rejected_but_delivered"],
            "delivered_unacknowledged": self.unacknowledged(),
            "arrived_before_reply": self.counts["arrived_before_reply"],
        }

    def problems_text(self) -> str:
        """``delivery-problems.txt``: one ``lost ID`` / ``duplicated ID COPIES/RECIPIENTS`` line per problem."""
        lost, dup, n_lost, n_dup = self.problems()
        lines = [f"# smtpbench delivery problems: {n_lost} lost, {n_dup} duplicated"]
        lines += [f"lost {self.ids.id_of(n)}" for n in lost]
        lines += [f"duplicated {self.ids.id_of(n)} {self.copies[n]}/{self.rcpts[n]}" for n in dup]
        for kind, total, listed in (("lost", n_lost, lost), ("duplicated", n_dup, dup)):
            if total > len(listed):
                lines.append(f"# ... and {total - len(listed)} more {kind} (not listed)")
        return "\n".join(lines) + "\n"
