"""Marks a sandboxed child sends while it runs, stamped by the kernel with the moment each was sent.

The child writes short datagrams on file descriptor 3 (MARK_FD). The parent's end of the socket pair asks the kernel
for receive timestamps (SO_TIMESTAMPNS), which a Unix datagram socket takes in the sender's send call: the time of a
mark comes from the kernel's clock, not from the child's, so code in the child cannot make a region it marks look
shorter than it was by faking its own clock. The parent drains the socket while it waits for the child, so a child
sending many marks never blocks on a full buffer.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

MARK_FD = 3  # where every child finds its end (sandbox/launch.py moves it there)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python's socket module does not name it
_TIMESPEC = struct.Struct("@qq")
_MAX_MARK = 4096  # bytes kept of one mark


@dataclass(frozen=True)
class Mark:
    ns: int  # when the child sent it, by the kernel's clock (CLOCK_REALTIME, nanoseconds)
    data: bytes


class MarkChannel:
    """One child's marks: create it, pass it to sandbox.run.run(marks=...), then read `marks`."""

    def __init__(self):
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._ours.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self._ours.setblocking(False)
        self._theirs.set_inheritable(True)
        self.marks: list[Mark] = []

    @property
    def child_fd(self) -> int:
        return self._theirs.fileno()

    def fileno(self) -> int:
        """What to wait on (select) for marks to read."""
        return self._ours.fileno()

    def started(self) -> None:
        """The child holds its end now: closing ours lets a read see the end once every child has exited."""
        self._theirs.close()

    def drain(self) -> None:
        """Read every mark waiting in the socket."""
        while True:
            try:
                data, ancillary, _, _ = self._ours.recvmsg(_MAX_MARK, socket.CMSG_SPACE(_TIMESTAMPNS_SIZE))
            except (BlockingIOError, InterruptedError):
                return
            stamp = next((_TIMESPEC.unpack(raw[:_TIMESTAMPNS_SIZE]) for level, kind, raw in ancillary
                          if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS), None)
            if stamp is not None:  # the kernel stamps every datagram; one without a stamp is not a mark
                self.marks.append(Mark(stamp[0] * 1_000_000_000 + stamp[1], data))

    def close(self) -> None:
        self._ours.close()
        if self._theirs.fileno() != -1:
            self._theirs.close()


_TIMESTAMPNS_SIZE = _TIMESPEC.size
