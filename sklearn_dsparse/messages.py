"""The one thing that travels: a message of block ids and block values.

Wire layout, which every engine counts the same way:

- a fixed header of ``HEADER_BYTES`` (sender id uint32, number of blocks
  uint32, round number uint64);
- one int32 id per block sent, omitted when the message carries all m blocks
  (their order is then implied, as in dense averaging);
- the values of those blocks, concatenated, in the model's dtype.
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
