"""The connections of a fit: authenticated, framed as the standard library
frames them, read and written by compiled code.

A fit's master listens with ``multiprocessing.connection.Listener`` (a fresh
random key per fit) and every task connects with ``Client``; both ends set
TCP_NODELAY.  After the handshake and the task's pickled specification, the
rounds' traffic uses the same framing as ``Connection.send_bytes``: a 4-byte
big-endian length (or -1 and an 8-byte length for 2 GiB and more), then the
frame.

On small models a round costs wake-ups and system calls, not bytes, and a
numba dispatch from Python costs microseconds (about as much as a round's
arithmetic at 100 parameters).  So the rounds themselves run in compiled
code, system calls included: ``next_frame`` and ``write_all`` call the C
library's ``read`` and ``write`` on the connection's descriptor, declared by
name (so that the functions that use them stay cacheable), and leave Python
only when an epoch ends or something goes wrong.

A stream's state is its read buffer and ``bounds = [start, end]``: the bytes
read and not consumed yet.  The status of a call is 0, ``CLOSED`` (the peer
closed the connection), ``TOO_LARGE`` (a frame larger than the buffer), or
the ``errno`` of a failed system call (``EINTR``: a signal arrived, so that
Python can run its handler).
"""

import errno
import os
import socket
import struct
import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..messages import copy_into

#: Bytes the connection adds to a frame of less than 2 GiB.
FRAME_PREFIX_BYTES = 4
LONG_FRAME_PREFIX_BYTES = 12
_LONG_FRAME = 0x7FFFFFFF

OK = 0
CLOSED = -1
TOO_LARGE = -2
EINTR = errno.EINTR
#: The status of a read or write that hit the round deadline (``set_timeouts``).
TIMED_OUT = (errno.EAGAIN, errno.EWOULDBLOCK)

# Where the C library keeps errno for the calling thread.
_ERRNO_LOCATION = "__error" if sys.platform.startswith(("darwin", "freebsd")) else \
    "__errno_location"


def _system_call(name):
    """The C library's ``ssize_t name(int fd, void *buf, size_t count)``."""

    @intrinsic
    def call(typingctx, fd, address, count):
        def codegen(context, builder, signature, args):
            size_t = context.get_value_type(types.intp)
            fnty = ir.FunctionType(size_t, [ir.IntType(32), ir.IntType(8).as_pointer(),
                                            size_t])
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            fd_, address_, count_ = args
            return builder.call(fn, [builder.trunc(fd_, ir.IntType(32)),
                                     builder.inttoptr(address_, ir.IntType(8).as_pointer()),
                                     count_])

        return types.intp(types.intp, types.uintp, types.intp), codegen

    return call


_read = _system_call("read")
_write = _system_call("write")


@intrinsic
def _errno(typingctx):
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32).as_pointer(), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _ERRNO_LOCATION)
        return builder.sext(builder.load(builder.call(fn, [])), ir.IntType(64))

    return types.int64(), codegen


def no_delay(conn):
    """Set TCP_NODELAY: rounds are small request/response exchanges, and
    Nagle's algorithm would hold every message back (measured 5x slower rounds
    without it; about 44 ms each when one end forgets it)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        sock.close()


def keep_alive(conn, idle=30, interval=10, count=3):
    """TCP keepalive: a peer whose host vanished without closing the
    connection (power lost, network partition) is declared gone after about
    ``idle + interval * count`` seconds of silence, so that a blocked read
    fails instead of waiting forever (a task whose master vanished ends)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPALIVE", idle),
                            ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
            if hasattr(socket, name):  # Linux has KEEPIDLE, macOS KEEPALIVE
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    finally:
        sock.close()


def set_timeouts(conn, seconds):
    """Make a read or a write on ``conn`` that blocks for ``seconds`` fail
    with ``EAGAIN`` (SO_RCVTIMEO, SO_SNDTIMEO): the round deadline, which
    holds inside compiled reads as well as Python's."""
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1e6))
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    finally:
        sock.close()


def describe(status):
    """What the status of ``next_frame`` or ``write_all`` means, in words."""
    if status == CLOSED:
        return "the connection was closed"
    if status == TOO_LARGE:
        return ("a frame larger than the read buffer arrived: the other end runs "
                "another version of sklearn-dsparse?")
    return os.strerror(status)


def check(status):
    """Raise what a failed ``next_frame`` or ``write_all`` means."""
    if status == CLOSED:
        raise EOFError(describe(status))
    if status != OK:
        raise OSError(status, describe(status))


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
def frame_at(buf, start, end):
    """The frame at ``buf[start:end]``: ``(offset, size, 0)`` of its body when
    it is complete, else ``(-1, -1, need)`` with ``need`` the bytes from
    ``start`` it takes at least."""
    if end - start < FRAME_PREFIX_BYTES:
        return -1, -1, FRAME_PREFIX_BYTES
    size = _big_endian(buf, start, 4)
    prefix = FRAME_PREFIX_BYTES
    if size == 0xFFFFFFFF:  # -1: the length follows as 8 bytes
        if end - start < LONG_FRAME_PREFIX_BYTES:
            return -1, -1, LONG_FRAME_PREFIX_BYTES
        size = _big_endian(buf, start + 4, 8)
        prefix = LONG_FRAME_PREFIX_BYTES
    if end - start < prefix + size:
        return -1, -1, prefix + size
    return start + prefix, size, 0


@njit(cache=True, nogil=True)
def next_frame(fd, buf, bounds, retry_interrupted):
    """Read until the next frame is in ``buf``; consume it.

    Returns ``(status, offset, size)``: the frame is ``buf[offset:offset +
    size]``, valid until the next call.  A signal (EINTR) is retried, or
    returned when ``retry_interrupted`` is False; nothing is lost either way.
    An empty buffer reads from byte 4 on, and a frame that must be moved to
    fit is moved there: its body (after a 4-byte prefix) then starts 8-aligned,
    so that a large message's values are used where they lie.
    """
    start = bounds[0]
    end = bounds[1]
    while True:
        offset, size, need = frame_at(buf, start, end)
        if need == 0:
            bounds[0] = offset + size
            return OK, offset, size
        if start == end:
            start = end = bounds[0] = bounds[1] = 4
        if start + need > buf.shape[0]:
            if 4 + need > buf.shape[0]:
                return TOO_LARGE, 0, 0
            # To a lower address: a forward copy is safe.
            copy_into(buf[4:], buf[start:end])
            end = bounds[1] = 4 + end - start
            start = bounds[0] = 4
        n = _read(fd, buf.ctypes.data + end, buf.shape[0] - end)
        if n > 0:
            end = bounds[1] = end + n
        elif n == 0:
            return CLOSED, 0, 0
        else:
            err = _errno()
            if err != EINTR or not retry_interrupted:
                return err, 0, 0


@njit(cache=True, nogil=True)
def write_all(fd, data):
    """Write the uint8 array ``data`` (whole frames); 0 or the errno."""
    pos = 0
    while pos < data.shape[0]:
        n = _write(fd, data.ctypes.data + pos, data.shape[0] - pos)
        if n >= 0:
            pos += n
        else:
            err = _errno()
            if err != EINTR:
                return err
    return OK
