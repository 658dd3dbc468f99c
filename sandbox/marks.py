"""Marks a sandboxed child sends while it runs, stamped by the kernel with the moment each was sent.

The child writes short datagrams on file descriptor 3 (MARK_FD). The parent's end of the socket pair asks the kernel
for receive timestamps (SO_TIMESTAMPNS), which a Unix datagram socket takes in the sender's send call: the time of a
mark comes from the kernel's clock, not from the child's, so code in the child cannot make a region it marks look
shorter than it was by faking its own clock. The parent reads the socket on a timer while it waits for the child;
the child's buffer holds thousands of marks, and the harness waits for room before a call, never inside one.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

MARK_FD = 3  # where every child finds its end (sandbox/launch.py moves it there)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python's socket module does not name it
_TIMESPEC = struct.Struct("@qq")
_MAX_MARK = 4096  # bytes kept of one mark
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_WANTED_BUFFER = 4 << 20  # about 5,000 marks (the kernel doubles what it is asked for)


@dataclass(frozen=True)
class Mark:
    ns: int  # when the child sent it, by the kernel's clock (CLOCK_REALTIME, nanoseconds)
    data: bytes


def _widen(sock: socket.socket) -> None:
    """Room for thousands of marks before the parent reads them (it reads on a timer): a datagram takes about 768
    bytes of the sender's buffer until it is read, and the default buffer holds 277. Root may force a larger buffer;
    anyone may ask for net.core.wmem_max. The harness waits for room before a call rather than block inside one."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, _WANTED_BUFFER)
    except OSError:
        try:
            wanted = int(open("/proc/sys/net/core/wmem_max").read())
        except (OSError, ValueError):
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, min(wanted, _WANTED_BUFFER))


class MarkChannel:
    """One child's marks: create it, pass it to sandbox.run.run(marks=...), then read `marks`. The socket pair goes both
    ways: `send` leaves the child a message to read on its end."""

    def __init__(self):
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._ours.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self._ours.setblocking(False)
        self._theirs.set_inheritable(True)
        _widen(self._theirs)
        self.marks: list[Mark] = []

    @property
    def child_fd(self) -> int:
        return self._theirs.fileno()

    def fileno(self) -> int:
        """What to wait on (select) for marks to read."""
        return self._ours.fileno()

    def send(self, data: bytes) -> None:
        """One datagram for the child to read from its end (before it starts: it waits in the socket)."""
        self._ours.send(data)

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
