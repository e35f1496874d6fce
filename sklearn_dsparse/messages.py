"""The one thing that travels: a message of block ids and block values.

Wire layout, which every engine counts the same way:

- a fixed header of ``HEADER_BYTES`` (sender id uint32, number of blocks
  uint32, round number uint64, little-endian);
- one int32 id per block sent (little-endian), omitted when the message
  carries all m blocks (their order is then implied, as in dense averaging);
- the values of those blocks, concatenated, in the model's dtype (float64, in
  the machine's byte order: the nodes of a fit share one architecture);
  ``solver="newton"`` sends them as an int16 exponent and float16 codes
  (``quantization``), followed by a few float64 or float32 values (its
  ``tail``).

A message of no blocks (a worker that sends nothing this round, with
``sparsifier="bernoulli"``; a broadcast when nobody sent) is its header alone,
no ids and no values: ``HEADER_BYTES``.  The frame's length tells it from a
message of all m blocks, which has no ids either but m blocks of values.

``write_header`` (the values follow it, written in place by
``worker.emit_message``) and ``read_message`` are that layout in compiled
code: a real engine moves each message as one frame of exactly these bytes.
``encode`` and ``decode_header`` are the same layout in NumPy, for the
rounds driven from Python (``engines/rounds.py``), which compile nothing.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

HEADER_BYTES = 16
BLOCK_ID_BYTES = np.dtype(np.int32).itemsize
VALUE_BYTES = np.dtype(np.float64).itemsize


@njit(cache=True)
def message_nbytes(n_blocks_sent, n_values, n_blocks_total, itemsize=VALUE_BYTES):
    """Exact size of a message, in bytes."""
    ids = 0 if n_blocks_sent == n_blocks_total else n_blocks_sent * BLOCK_ID_BYTES
    return HEADER_BYTES + ids + n_values * itemsize


#: The header as a NumPy record (the layout above).
HEADER = np.dtype([("sender", "<u4"), ("n_ids", "<u4"), ("round", "<u8")])


def encode(sender, rnd, block_ids, n_ids, *arrays):
    """The frame of a message: its header, ``block_ids[:n_ids]`` and the
    bytes of ``arrays`` (values), as one uint8 array."""
    ids = np.asarray(block_ids[:n_ids], dtype="<i4")
    header = np.array([(sender, n_ids, rnd)], dtype=HEADER)
    return np.concatenate([header.view(np.uint8), ids.view(np.uint8)]
                          + [np.ascontiguousarray(a).view(np.uint8) for a in arrays])


def decode_header(frame):
    """(sender, n_ids, round, block ids) of the frame (a uint8 array), or
    None when it is shorter than its header and ids."""
    if frame.nbytes < HEADER_BYTES:
        return None
    header = frame[:HEADER_BYTES].view(HEADER)[0]
    n_ids = int(header["n_ids"])
    end = HEADER_BYTES + n_ids * BLOCK_ID_BYTES
    if frame.nbytes < end:
        return None
    return (int(header["sender"]), n_ids, int(header["round"]),
            frame[HEADER_BYTES:end].view("<i4").astype(np.int32))


@njit(cache=True)
def _put_uint(out, pos, value, n_bytes):
    for i in range(n_bytes):
        out[pos + i] = (value >> (8 * i)) & 0xFF


@njit(cache=True)
def _get_uint(buf, pos, n_bytes):
    value = 0
    for i in range(n_bytes):
        value |= np.int64(buf[pos + i]) << (8 * i)
    return value


@njit(cache=True)
def copy_into(dst, src):
    """dst[:len(src)] = src, as a loop: numba's slice assignment checks for
    overlap and goes element by element, about 10x slower than this."""
    for i in range(src.shape[0]):
        dst[i] = src[i]


@njit(cache=True)
def write_header(out, sender, rnd, block_ids, n_ids):
    """Write a message's header and block ids into the uint8 array ``out``;
    return where its values go.  ``n_ids`` is 0 when it carries every block."""
    _put_uint(out, 0, sender, 4)
    _put_uint(out, 4, n_ids, 4)
    _put_uint(out, 8, rnd, 8)
    pos = HEADER_BYTES
    for j in range(n_ids):
        _put_uint(out, pos, block_ids[j], BLOCK_ID_BYTES)
        pos += BLOCK_ID_BYTES
    return pos


@njit(cache=True)
def read_header(frame):
    """(sender, number of block ids, round) of the message in ``frame``."""
    return _get_uint(frame, 0, 4), _get_uint(frame, 4, 4), _get_uint(frame, 8, 8)


@njit(cache=True)
def read_message(frame, starts, n_outputs, all_blocks, ids, values):
    """The blocks and values of the message in the uint8 array ``frame``.

    Returns ``(block_ids, n_blocks, values)``: ``all_blocks`` when it carries
    every block, else the ids decoded into ``ids`` (int32; none for a frame
    that is a header alone, the empty message); its values are a
    view of the frame where it is aligned, else a copy in ``values``.  A frame
    whose size or block ids do not agree with the ``starts`` of the blocks
    gives ``n_blocks = -1``: nothing is read past its end.
    """
    n_blocks_total = starts.shape[0] - 1
    n_ids = _get_uint(frame, 4, 4)
    pos = HEADER_BYTES + n_ids * BLOCK_ID_BYTES
    if n_ids > n_blocks_total or pos > frame.shape[0]:
        return all_blocks, -1, values[:0]
    n_values = 0
    if n_ids == 0 and frame.shape[0] == HEADER_BYTES:
        return ids[:0], 0, values[:0]
    if n_ids == 0:
        block_ids = all_blocks
        n_blocks = n_blocks_total
        n_values = starts[n_blocks_total] * n_outputs
    else:
        for j in range(n_ids):
            b = _get_uint(frame, HEADER_BYTES + j * BLOCK_ID_BYTES, BLOCK_ID_BYTES)
            if b >= n_blocks_total:
                return all_blocks, -1, values[:0]
            ids[j] = b
            n_values += (starts[b + 1] - starts[b]) * n_outputs
        block_ids = ids[:n_ids]
        n_blocks = n_ids
    data = frame[pos:]
    if data.shape[0] != n_values * VALUE_BYTES:
        return all_blocks, -1, values[:0]
    if data.ctypes.data % VALUE_BYTES == 0:
        return block_ids, n_blocks, data.view(np.float64)
    copy = values[:n_values]
    copy_into(copy.view(np.uint8), data)
    return block_ids, n_blocks, copy


@dataclass(frozen=True)
class Message:
    """Block ids (int32) and the concatenated values of those blocks."""

    sender: int
    round: int
    block_ids: np.ndarray
    values: np.ndarray

    def nbytes(self, n_blocks_total):
        return message_nbytes(
            len(self.block_ids), self.values.size, n_blocks_total,
            self.values.dtype.itemsize,
        )
