"""The rounds' frames are the standard library's: a FrameStream and a
``multiprocessing.connection.Connection`` understand each other, byte for byte.
"""

import struct
import threading
from multiprocessing.connection import Pipe

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from sklearn_dsparse.engines._transport import (READ_BUFFER_BYTES, FrameStream,
                                                frame_spans, prefix_bytes,
                                                write_prefix)

# Frame sizes around the edges: empty, tiny, not a multiple of 4 or 8, and
# larger than a stream's first read buffer (which must then grow).
SIZES = [0, 1, 8, 13, 4096, 3 * READ_BUFFER_BYTES + 5]


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
    # A socketpair holds a few hundred KiB: the large frames need a reader
    # running while they are written.
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_frames_written_by_a_stream_are_read_by_recv_bytes():
    a, b = Pipe()
    payloads = _payloads(SIZES)
    writer = _in_thread(lambda: FrameStream(a).send(_framed(payloads)))
    received = [b.recv_bytes() for _ in payloads]
    writer.join()
    assert received == [p.tobytes() for p in payloads]


def test_a_stream_finds_the_frames_of_send_bytes_in_one_read():
    a, b = Pipe()
    payloads = _payloads(SIZES + SIZES[::-1], seed=1)

    def write():
        for p in payloads:
            a.send_bytes(p)

    writer = _in_thread(write)
    stream = FrameStream(b)
    got = []
    for k in (1, 2, len(payloads) - 3):  # bursts of several frames
        buffer, spans = stream.frames(k)
        got += [buffer[o:o + n].tobytes() for o, n in spans]
    writer.join()
    assert got == [p.tobytes() for p in payloads]
    assert stream.buffer.size >= SIZES[-1]  # it grew to hold the largest


def test_a_large_frame_body_is_8_aligned_in_the_read_buffer():
    # So that a large message's values are read in place (messages.read_message).
    a, b = Pipe()
    payload = _payloads([2 * READ_BUFFER_BYTES])[0]
    writer = _in_thread(lambda: (a.send_bytes(b"xyz"), a.send_bytes(payload)))
    stream = FrameStream(b)
    stream.frames(1)
    buffer, spans = stream.frames(1)
    writer.join()
    offset, size = spans[0]
    assert_array_equal(buffer[offset:offset + size], payload)
    assert (buffer.ctypes.data + offset) % 8 == 0


def test_long_frame_prefix_is_the_standard_librarys():
    # Frames of 2 GiB and more: -1, then the length as 8 bytes (Connection).
    for size, expected in [(2**31 - 1, struct.pack("!i", 2**31 - 1)),
                           (2**31 + 5, struct.pack("!i", -1) + struct.pack("!Q", 2**31 + 5))]:
        out = np.zeros(12, dtype=np.uint8)
        n = write_prefix(out, 0, size)
        assert n == prefix_bytes(size) == len(expected)
        assert out[:n].tobytes() == expected
        # a reader that has only the prefix knows how much it still needs
        spans = np.empty((1, 2), dtype=np.int64)
        assert frame_spans(out, 0, n, 1, spans) == (0, n + size)


def test_partial_frames_are_not_returned():
    buffer = _framed(_payloads([10, 20]))
    spans = np.empty((2, 2), dtype=np.int64)
    for end in range(buffer.size):
        complete, need = frame_spans(buffer, 0, end, 2, spans)
        assert complete == (0 if end < 14 else 1)
        assert need > end
    assert frame_spans(buffer, 0, buffer.size, 2, spans) == (2, 0)
    assert spans.tolist() == [[4, 10], [18, 20]]


def test_a_closed_connection_ends_the_read():
    a, b = Pipe()
    a.send_bytes(b"0123")  # half of what the reader waits for
    a.close()
    with pytest.raises(EOFError):
        FrameStream(b).frames(2)
