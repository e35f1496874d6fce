"""The connections of a fit: authenticated, framed as the standard library
frames them, read and written a burst at a time.

A fit's master listens with ``multiprocessing.connection.Listener`` (a fresh
random key per fit) and every task connects with ``Client``; both ends set
TCP_NODELAY.  After the handshake and the task's pickled specification, the
rounds' traffic uses the same framing as ``Connection.send_bytes``: a 4-byte
big-endian length (or -1 and an 8-byte length for 2 GiB and more), then the
frame.  ``FrameStream`` moves these frames without a Python call per frame:
a writer lays a burst of frames out in one buffer (``write_prefix``) and
sends it with one system call; a reader takes whatever has arrived in one
read and finds the frames in it (``frame_spans``), so compiled code can decode
them in place.  On small models a round costs wake-ups and system calls, not
bytes: each process then wakes and reads once per round.
"""

import os
import socket

import numpy as np
from numba import njit

#: Bytes the connection adds to a frame of less than 2 GiB.
FRAME_PREFIX_BYTES = 4
LONG_FRAME_PREFIX_BYTES = 12
_LONG_FRAME = 0x7FFFFFFF
#: A stream's read buffer starts at this size and grows to hold a burst.
READ_BUFFER_BYTES = 1 << 16


def no_delay(conn):
    """Set TCP_NODELAY: rounds are small request/response exchanges, and
    Nagle's algorithm would hold every message back (measured 5x slower rounds
    without it; about 44 ms each when one end forgets it)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        sock.close()


@njit(cache=True)
def prefix_bytes(frame_bytes):
    """The size of the length prefix of a frame of ``frame_bytes``."""
    return FRAME_PREFIX_BYTES if frame_bytes <= _LONG_FRAME else \
        LONG_FRAME_PREFIX_BYTES


@njit(cache=True)
def write_prefix(out, pos, frame_bytes):
    """Write the length prefix of a frame of ``frame_bytes`` at ``out[pos]``;
    return the prefix's size (the frame follows it)."""
    if frame_bytes <= _LONG_FRAME:
        for i in range(4):
            out[pos + i] = (frame_bytes >> (24 - 8 * i)) & 0xFF
        return FRAME_PREFIX_BYTES
    for i in range(4):
        out[pos + i] = 0xFF  # -1
    for i in range(8):
        out[pos + 4 + i] = (frame_bytes >> (56 - 8 * i)) & 0xFF
    return LONG_FRAME_PREFIX_BYTES


@njit(cache=True)
def _big_endian(buf, pos, n_bytes):
    value = 0
    for i in range(n_bytes):
        value = (value << 8) | np.int64(buf[pos + i])
    return value


@njit(cache=True)
def frame_spans(buf, start, end, n_frames, spans):
    """Find the next ``n_frames`` frames in ``buf[start:end]``.

    Writes the offset and size of each complete one into ``spans`` and returns
    how many are complete, and the bytes from ``start`` that the first
    incomplete one needs (at least; 0 when all are complete).
    """
    pos = start
    for j in range(n_frames):
        if end - pos < FRAME_PREFIX_BYTES:
            return j, pos + FRAME_PREFIX_BYTES - start
        size = _big_endian(buf, pos, 4)
        prefix = FRAME_PREFIX_BYTES
        if size == 0xFFFFFFFF:  # -1: the length follows as 8 bytes
            if end - pos < LONG_FRAME_PREFIX_BYTES:
                return j, pos + LONG_FRAME_PREFIX_BYTES - start
            size = _big_endian(buf, pos + 4, 8)
            prefix = LONG_FRAME_PREFIX_BYTES
        if end - pos < prefix + size:
            return j, pos + prefix + size - start
        spans[j, 0] = pos + prefix
        spans[j, 1] = size
        pos += prefix + size
    return n_frames, 0


class FrameStream:
    """The rounds' frames on one connection.

    ``send`` writes a buffer of already framed bytes; ``frames(k)`` returns
    the read buffer and the spans of the next k frames in it, valid until the
    next call.  A stream reads ahead: once it reads from a connection, all
    that comes after must be read through it.
    """

    def __init__(self, conn):
        self._fd = conn.fileno()
        self.buffer = np.empty(READ_BUFFER_BYTES, dtype=np.uint8)
        self._start = self._end = 0  # buffer[start:end]: read, not consumed yet
        self._spans = np.empty((1, 2), dtype=np.int64)

    def send(self, data):
        """Write ``data`` (a contiguous buffer of whole frames)."""
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self._fd, view):]

    def frames(self, n_frames):
        """Read until the next ``n_frames`` frames are in; return the buffer
        and their ``(offset, size)`` rows, and consume them."""
        if self._spans.shape[0] < n_frames:
            self._spans = np.empty((n_frames, 2), dtype=np.int64)
        while True:
            complete, need = frame_spans(self.buffer, self._start, self._end,
                                         n_frames, self._spans)
            if complete == n_frames:
                break
            self._fill(need)
        last = self._spans[n_frames - 1]
        self._start = int(last[0] + last[1])
        return self.buffer, self._spans[:n_frames]

    def _fill(self, need):
        """Read until ``buffer[start:start + need]`` has come in."""
        if self._start == self._end:
            self._start = self._end = 4  # see below
        if self._start + need > self.buffer.size:
            # Move what is pending to the front, 4 bytes in: a frame's body
            # (after its 4-byte prefix) then starts 8-aligned, so that a large
            # message's values are read where they lie, without a copy.
            pending = self._end - self._start
            size = self.buffer.size
            while 4 + need > size:
                size *= 2
            buffer = self.buffer if size == self.buffer.size else \
                np.empty(size, dtype=np.uint8)
            buffer[4:4 + pending] = self.buffer[self._start:self._end]
            self.buffer, self._start, self._end = buffer, 4, 4 + pending
        view = memoryview(self.buffer)
        while self._end - self._start < need:
            n = os.readv(self._fd, [view[self._end:]])
            if n == 0:
                raise EOFError("the connection was closed")
            self._end += n
