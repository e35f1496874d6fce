"""The rounds' frames are the standard library's, read and written by compiled
code: ``write_all`` / ``next_frame`` and a ``multiprocessing.connection``
``Connection`` understand each other byte for byte, and the reads survive
partial frames, closed connections and signals.
"""

import signal
import struct
import threading
import time
from multiprocessing.connection import Pipe

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from sklearn_dsparse.engines._transport import (CLOSED, EINTR, OK, TOO_LARGE, check,
                                                frame_at, next_frame, prefix_bytes,
                                                write_all, write_prefix)

# Frame sizes around the edges: empty, tiny, not a multiple of 4 or 8, and
# larger than a socket's buffer (written while the other end reads).
SIZES = [0, 1, 8, 13, 4096, 3 * 65536 + 5]


def _payloads(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8) for size in sizes]


def _framed(payloads):
    """The payloads laid out in one buffer, each after its length prefix."""
    out = np.empty(sum(p.size + 12 for p in payloads), dtype=np.uint8)
    pos = 0
    for p in payloads:
        pos += write_prefix(out, pos, p.size)
        out[pos:pos + p.size] = p
        pos += p.size
    return out[:pos]


def _in_thread(target):
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def _reader(conn, size=1 << 20):
    """A stream's state: the connection's descriptor, a buffer and its bounds."""
    return conn.fileno(), np.empty(size, dtype=np.uint8), np.zeros(2, dtype=np.int64)


def test_frames_written_by_write_all_are_read_by_recv_bytes():
    a, b = Pipe()
    payloads = _payloads(SIZES)
    writer = _in_thread(lambda: write_all(a.fileno(), _framed(payloads)))
    received = [b.recv_bytes() for _ in payloads]
    writer.join()
    assert received == [p.tobytes() for p in payloads]


def test_next_frame_reads_the_frames_of_send_bytes():
    a, b = Pipe()
    payloads = _payloads(SIZES + SIZES[::-1], seed=1)

    def write():
        for p in payloads:
            a.send_bytes(p)

    writer = _in_thread(write)
    fd, buffer, bounds = _reader(b)
    got = []
    for _ in payloads:
        status, offset, size = next_frame(fd, buffer, bounds, True)
        assert status == OK
        got.append(buffer[offset:offset + size].tobytes())
    writer.join()
    assert got == [p.tobytes() for p in payloads]


def test_a_frame_that_is_moved_has_its_body_8_aligned():
    # So that a large message's values are used where they lie
    # (messages.read_message).  The buffer holds the large frame only if what
    # came before it is moved out of the way.
    a, b = Pipe()
    payload = _payloads([60_000])[0]
    writer = _in_thread(lambda: (a.send_bytes(b"xyz"), a.send_bytes(payload)))
    fd, buffer, bounds = _reader(b, size=4 + 4 + payload.size)
    assert next_frame(fd, buffer, bounds, True)[0] == OK
    status, offset, size = next_frame(fd, buffer, bounds, True)
    writer.join()
    assert status == OK
    assert_array_equal(buffer[offset:offset + size], payload)
    assert (buffer.ctypes.data + offset) % 8 == 0


def test_a_frame_larger_than_the_buffer_is_refused():
    a, b = Pipe()
    a.send_bytes(bytes(100))
    fd, buffer, bounds = _reader(b, size=64)
    assert next_frame(fd, buffer, bounds, True)[0] == TOO_LARGE
    with pytest.raises(OSError, match="larger than the read buffer"):
        check(TOO_LARGE)


def test_long_frame_prefix_is_the_standard_librarys():
    # Frames of 2 GiB and more: -1, then the length as 8 bytes (Connection).
    for size, expected in [(2**31 - 1, struct.pack("!i", 2**31 - 1)),
                           (2**31 + 5, struct.pack("!i", -1) + struct.pack("!Q", 2**31 + 5))]:
        out = np.zeros(12, dtype=np.uint8)
        n = write_prefix(out, 0, size)
        assert n == prefix_bytes(size) == len(expected)
        assert out[:n].tobytes() == expected
        # a reader that has only the prefix knows how much it still needs
        assert frame_at(out, 0, n) == (-1, -1, n + size)


def test_partial_frames_are_not_returned():
    buffer = _framed(_payloads([10, 20]))
    for end in range(buffer.size):
        offset, size, need = frame_at(buffer, 0, end)
        if end < 14:
            assert (offset, size) == (-1, -1) and need > end
        else:
            assert (offset, size, need) == (4, 10, 0)
    assert frame_at(buffer, 14, buffer.size) == (18, 20, 0)


def test_a_closed_connection_ends_the_read():
    a, b = Pipe()
    a.send_bytes(b"0123")
    a.close()
    fd, buffer, bounds = _reader(b)
    assert next_frame(fd, buffer, bounds, True)[0] == OK
    assert next_frame(fd, buffer, bounds, True)[0] == CLOSED
    with pytest.raises(EOFError):
        check(CLOSED)


def _signal_soon(then=None):
    """Send this (main) thread SIGUSR1 in 0.2 s, then call ``then``."""
    main = threading.get_ident()

    def signal_then():
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGUSR1)
        if then is not None:
            time.sleep(0.2)
            then()

    return _in_thread(signal_then)


@pytest.fixture
def sigusr1_handled():
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: received.append(True))
    yield received
    signal.signal(signal.SIGUSR1, previous)


def test_a_signal_interrupts_a_read_only_when_asked(sigusr1_handled):
    # The master's reads return EINTR so that Python runs the handler (Ctrl-C:
    # KeyboardInterrupt); a task's reads go on.
    a, b = Pipe()
    fd, buffer, bounds = _reader(b)
    thread = _signal_soon()
    assert next_frame(fd, buffer, bounds, False)[0] == EINTR
    thread.join()

    thread = _signal_soon(then=lambda: a.send_bytes(b"after the signal"))
    status, offset, size = next_frame(fd, buffer, bounds, True)
    thread.join()
    assert status == OK
    assert buffer[offset:offset + size].tobytes() == b"after the signal"
    assert sigusr1_handled == [True, True]
