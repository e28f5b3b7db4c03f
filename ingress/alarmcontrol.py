"""The alarm commands: ``alarms`` lists, ``ack_alarm`` acknowledges, ``shelve_alarm`` and
``unshelve_alarm`` shelve and unshelve the live alarms of this controller.

The alarms and their ISA-18.2 states live in Redis (:class:`tasks.alarmboard.AlarmBoard`),
so whichever ingress handles the command, and whichever worker raised the alarm, sees
the same state; each change sends its message on ``{prefix}/{cid}/alarms``.
"""

from __future__ import annotations

import time
from typing import Any

from modellib.errors import did_you_mean
from tasks.alarmboard import AlarmBoard, state_of

from .commands import Command
from .errors import UnknownAlarm
from .replies import Durable, Replies

__all__ = ["AlarmControl"]


class AlarmControl:
    def __init__(self, board: AlarmBoard, replies: Replies, durable: Durable) -> None:
        self.board = board
        self.replies = replies
        self.durable = durable

    def active(self) -> list[dict[str, Any]]:
        """Every live alarm of this controller that is not ``normal``."""
        return self.durable("reading the alarms", self.board.active)

    def find(self, body: dict[str, Any]) -> dict[str, Any]:
        """The live alarm a command names (``alarm``, ``source``); ``unknown_alarm``
        naming the live ones otherwise."""
        alarm, source = body["alarm"], body["source"]
        rec = self.durable("reading the alarm", lambda: self.board.get(source, alarm))
        if rec is not None:
            return rec
        live = [f"{a['alarm']} of {a['source']}" for a in self.active()]
        names = [a.split(" of ")[0] for a in live]
        raise UnknownAlarm(
            f"no live alarm {alarm!r} of source {source!r} on this controller"
            f"{did_you_mean(alarm, names) if names else ''} (an alarm in state normal is "
            f"not kept); live: {', '.join(live) or 'none'} (`alarms` lists them)",
            path="alarm")

    def change(self, command: Command, event: str) -> None:
        """Apply ``event`` (acknowledged, shelved, unshelved) and answer the command with
        the alarm's state after it."""
        body = command.body
        fields: dict[str, Any] = {}
        if event == "shelved":
            fields["until"] = round(time.time() + float(body["for_"]), 3)
        state = self.durable("changing the alarm", lambda: self.board.event(
            body["source"], body["alarm"], event, **fields))
        if state is None:  # nothing to change: say the state it is in
            state = state_of(self.board.get(body["source"], body["alarm"]))
        self.replies.final(command, "result", {
            "status": "ok", "alarm": body["alarm"], "source": body["source"], "state": state,
            **({"until": fields["until"]} if "until" in fields else {})})
