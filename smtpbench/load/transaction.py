"""The transactions of a load session: envelope, data (DATA or BDAT), replies and their accounting.

The hot path of a run.  Timing and accounting follow the notes of
:mod:`smtpbench.load.session` (a transaction runs from the later of its MAIL
written and the previous final reply to its own final reply).
"""

from __future__ import annotations

import trio

from smtpbench.load.extensions import UNSUPPORTED, Pool
from smtpbench.load.lmtp import bdat_last, data_end_replies, replies_due
from smtpbench.load.messages import RenderedMessage
from smtpbench.load.session import Control, Session, perf
from smtpbench.protocol import commands
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.state import State


def _reject_kind(code: int) -> str:
    return "temp_fail" if code < 500 else "perm_fail"


def envelope(s: Session, message_no: int, msg: RenderedMessage) -> list[tuple[str, bytes]]:
    """MAIL (with the parameters ``msg`` needs), one RCPT per recipient, then DATA or ``msg``'s BDAT chunks."""
    st = s.settings
    ext = st.extensions
    n_rcpt = (
        st.recipients_min
        if st.recipients_min == st.recipients_max
        else s.rng.randint(st.recipients_min, st.recipients_max)
    )
    params = ext.mail_params(msg, s.caps, message_no, s.number, s.recorder.counters.counts)
    cmds = [("MAIL", commands.command("MAIL", f"FROM:<{st.sender.render(message_no, s.number)}>{params}"))]
    notify = ext.rcpt_params(s.caps) if ext.dsn else ""
    for i in range(n_rcpt):
        cmds.append(("RCPT", commands.command("RCPT", f"TO:<{st.recipient.render(message_no, s.number, i)}>{notify}")))
    if not s.bdat:
        cmds.append(("DATA", commands.DATA))
        return cmds
    # RFC 3030: chunks may follow the envelope in one pipelined group (2920 lets BDAT be pipelined).
    # The id fields go first as a chunk of their own (a message is its chunks' concatenation).
    *chunks, last = msg.bdat
    cmds.append(("BDAT", st.ids.chunk(message_no)))
    cmds += [("BDAT", chunk) for chunk in chunks]
    cmds.append(("BDAT_LAST", last))
    return cmds


#: Phase (histogram tag) and timeout key of each envelope verb.
_PHASES = {
    "MAIL": ("mail", "mail"),
    "RCPT": ("rcpt", "rcpt"),
    "DATA": ("data", "data"),
    "BDAT": ("bdat", "data_block"),
    "BDAT_LAST": ("data_end", "data_end"),
}
_BODY_VERBS = ("DATA", "BDAT", "BDAT_LAST")


async def _envelope_replies(s: Session, cmds: list[tuple[str, bytes]], sent: bool, lmtp_bdat: bool = False) -> bool:
    """Await the envelope's replies (sending it command by command unless ``sent``).

    True when DATA got its 354 (or BDAT ... LAST its 250).  Otherwise the message is counted as
    rejected, by the kind of its first refusal, and an open transaction is reset.  ``lmtp_bdat``:
    BDAT over LMTP, whose ``BDAT ... LAST`` gets one reply per accepted recipient (smtpbench.load.lmtp).
    """
    conn = s.conn
    assert conn is not None
    rec = s.recorder
    counts = rec.counters.counts
    replies: list[tuple[str, Reply]] = []
    if sent:
        ready = conn.ready
        for verb, _ in cmds[:-1] if lmtp_bdat else cmds:
            phase, timeout_key = _PHASES[verb]
            s.phase = phase
            # A reply already parsed (the group's later ones usually are) is taken without an await.
            replies.append((verb, (s.take(phase) if ready else await s.reply(phase, timeout_key))[1]))
        if lmtp_bdat:
            replies.append(("BDAT_LAST", await data_end_replies(s, replies_due(conn.protocol))))
    else:
        for verb, line in cmds:
            if verb in _BODY_VERBS and not any(v == "RCPT" and r.code < 400 for v, r in replies):
                break  # all recipients refused: DATA or BDAT would be pointless (and 503)
            if lmtp_bdat and verb == "BDAT_LAST":
                reply = await bdat_last(s, line)
            else:
                reply = await s.command(verb, line, *_PHASES[verb])
            replies.append((verb, reply))
            if reply.code >= 400 and verb != "RCPT":
                break
    refusal = 0  # the first refusal's code: it classifies a message that is not sent
    s.rcpt_ok = 0
    mail_ok = replies[0][1].code < 400  # after a refused MAIL no RCPT is a recipient, whatever its reply
    for verb, reply in replies:
        if verb == "RCPT":
            if reply.code >= 400:
                counts["recipients_rejected"] += 1
            elif mail_ok:
                s.rcpt_ok += 1
        if reply.code >= 400 and not refusal:
            refusal = reply.code
    if conn.protocol.state is State.DATA and not s.rcpt_ok:
        # RFC 2920 3.1: when DATA is accepted although no recipient was (or MAIL was refused), "the client
        # SMTP should send a single dot"; an RSET or the next MAIL would be read as message content.
        await s.command("DATA_END", commands.DATA_END_EMPTY, "rset", "data_end")
    elif replies and replies[-1][0] == "BDAT_LAST":
        counts["transfer.bdat"] += 1  # every chunk was sent (and answered)
        if replies[-1][1].code < 400 and s.rcpt_ok:  # a 250 for nobody (MAIL or every RCPT refused) is no delivery
            return True
    elif conn.protocol.state is State.DATA:
        return True
    counts["messages_rejected"] += 1
    s.open_messages -= 1
    rec.counters.errors[_reject_kind(refusal or 554)] += 1
    if conn.protocol.state in (State.MAIL, State.RCPT):
        await s.command("RSET", commands.RSET, "rset", "other")
    return False


def _unsupported(s: Session, keyword: str) -> None:
    """Count a message the server cannot take (it lacks ``keyword``): never sent, never half-sent."""
    counters = s.recorder.counters
    counters.errors[UNSUPPORTED] += 1
    counters.counts["messages_unsupported"] += 1
    counters.counts[f"unsupported.{keyword}"] += 1


async def transactions(s: Session, pool: Pool, control: Control, lag_us: int | None) -> None:
    """Up to ``messages_per_session`` transactions on the session's connection.

    Pipelined (RFC 2920), an envelope goes out in one write; with
    ``pipeline_data`` (and no ``think_time``) a message's data also carries
    the next envelope in the same write (RFC 2920 3.1 lets message content
    start a group).  Then the next ``mail`` phase and the next transaction
    start at the reply to the previous message's data (module notes, Timing).
    With ``think_time`` the session pauses that long between messages.
    """
    st = s.settings
    conn = s.conn
    assert conn is not None
    rec = s.recorder
    counts = rec.counters.counts
    think = st.think_time
    coalesce = s.pipelined and st.pipeline_data and not think and not s.bdat
    ext = st.extensions
    ids = st.ids
    tracker = st.tracker
    lmtp = st.lmtp
    lmtp_bdat = lmtp and s.bdat
    due = 1  # LMTP: replies the current message's final dot gets
    left = st.messages_per_session - 1
    message_no = control.claim_message(first=True)
    cmds: list[tuple[str, bytes]] | None = None  # an envelope already on the wire
    msg: RenderedMessage | None = None  # the next envelope's message, once chosen
    start = 0.0
    while message_no >= 0:
        if cmds is None:
            if msg is None:
                msg = pool.pick(s.rng, message_no, s.number)
            lacking = ext.missing(msg, s.caps)
            if lacking:  # never sent broken: counted (not as sent), and on to the next message
                _unsupported(s, lacking)
                msg = None
                if left <= 0:
                    return
                left -= 1
                message_no = control.claim_message()
                continue
            cmds = envelope(s, message_no, msg)
            start = s.mark = perf()
            counts["messages_sent"] += 1
            s.open_messages += 1
            if s.pipelined:
                s.phase = "mail"
                s.arm(st.timeouts["data_block" if s.bdat else "mail"])
                await conn.send_group(cmds)
        sent, msg = msg, None
        assert sent is not None
        if s.bdat and tracker is not None:  # the data goes with the envelope (pipelined or not)
            tracker.sent(message_no, len(cmds) - 2 - len(sent.bdat), s.started)
        accepted = await _envelope_replies(s, cmds, s.pipelined, lmtp_bdat)
        if s.bdat and tracker is not None:  # only accepted recipients get a copy: more is a duplicate
            tracker.recipients(message_no, s.rcpt_ok)
        cmds = None
        following = -1
        if s.bdat:  # the chunks went with the envelope: its replies settled the message
            if accepted or s.pipelined:
                counts["bytes_sent"] += sent.size + ids.size(message_no)
            if tracker is not None:
                tracker.replied(message_no, accepted, s.mark)
            if accepted:
                end = s.mark
                s.open_messages -= 1
                counts["messages_accepted"] += 1
                rec.record("transaction", int((end - start) * 1_000_000))
                if lag_us is not None:
                    rec.record("corrected.transaction", int((end - start) * 1_000_000) + lag_us)
        elif accepted:
            if lmtp:  # one reply per accepted RCPT will come (RFC 2033 4.2): counted before anything else is sent
                due = replies_due(conn.protocol)
            wire = ids.stamp(message_no, sent.wire)
            s.arm(st.timeouts["data_block"])
            s.phase = "data_end"
            s.mark = perf()
            if coalesce and left > 0:
                following = control.claim_message()
                left -= 1
            if following >= 0:
                msg = pool.pick(s.rng, following, s.number)
                if not ext.missing(msg, s.caps):  # else it cannot go with this data: the loop's top counts it
                    cmds = envelope(s, following, msg)
                    counts["messages_sent"] += 1
                    s.open_messages += 1
                    await conn.send_group([("DATA_END", wire), *cmds])
            if cmds is None:
                await conn.send("DATA_END", wire)
            counts["transfer.data"] += 1
            counts["bytes_sent"] += sent.size + len(wire) - len(sent.wire)
            if tracker is not None:
                tracker.sent(message_no, s.rcpt_ok, s.started)
            if lmtp:
                reply = await data_end_replies(s, due)
            else:
                _, reply = await s.reply("data_end", "data_end")
            end = s.mark
            if tracker is not None:
                tracker.replied(message_no, reply.code < 400, end)
            s.open_messages -= 1
            if reply.code < 400:
                counts["messages_accepted"] += 1
            else:
                counts["messages_rejected"] += 1
                rec.counters.errors[_reject_kind(reply.code)] += 1
            rec.record("transaction", int((end - start) * 1_000_000))
            if lag_us is not None:
                rec.record("corrected.transaction", int((end - start) * 1_000_000) + lag_us)
            if following >= 0:
                # The next envelope went out with this data; its transaction starts at this
                # reply (the later of its MAIL written and the previous final reply).
                start = end
                message_no = following
                continue
        if left <= 0:
            return
        left -= 1
        if think:
            s.disarm()  # a pause is not a wait on the server
            s.phase = "think"
            s.mark = perf()
            with trio.move_on_after(think):  # the run's end cuts the pause short: no message follows it then
                await control.stopped.wait()
        message_no = control.claim_message()
