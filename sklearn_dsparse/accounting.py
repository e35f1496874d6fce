"""Bytes up and down, and the per-epoch history.

Every engine counts its rounds with ``count_message`` and ``count_round``
(compiled, called inside the round, sizes from ``messages.message_nbytes``);
this module accumulates and presents them.
"""

from collections.abc import Mapping

import numpy as np
from numba import njit

from .messages import message_nbytes

#: Order of the int64 counters a round loop increments.
COUNTERS = ("rounds", "uplink_bytes", "downlink_bytes", "dense_uplink_bytes",
            "blocks_sent")


def new_counters():
    return np.zeros(len(COUNTERS), dtype=np.int64)


@njit(cache=True)
def count_message(counters, n_blocks_sent, n_values, n_blocks):
    """One worker's message to the master."""
    counters[1] += message_nbytes(n_blocks_sent, n_values, n_blocks)
    counters[4] += n_blocks_sent


@njit(cache=True)
def count_round(counters, n_workers, n_blocks_sent, n_values, n_blocks,
                n_parameters):
    """The end of a round: the broadcast, received by every worker, and the
    dense messages (``n_parameters`` values each) that averaging would have
    sent up instead."""
    counters[0] += 1
    counters[2] += n_workers * message_nbytes(n_blocks_sent, n_values, n_blocks)
    counters[3] += n_workers * message_nbytes(n_blocks, n_parameters, n_blocks)


def add_message(counters, n_blocks_sent, n_blocks, payload_bytes):
    """``count_message`` for rounds driven from Python (``solver="newton"``,
    asynchronous rounds), which compile nothing: a message of
    ``payload_bytes`` after its header and block ids."""
    counters[1] += message_nbytes.py_func(n_blocks_sent, payload_bytes, n_blocks, 1)
    counters[4] += n_blocks_sent


def add_round(counters, n_workers, n_blocks_sent, n_values, n_blocks,
              dense_payload_bytes):
    """``count_round`` for rounds driven from Python: the broadcast of
    ``n_values`` float64 values, and ``dense_payload_bytes``, what each
    worker's message would carry with every block sent."""
    counters[0] += 1
    counters[2] += n_workers * message_nbytes.py_func(n_blocks_sent, n_values, n_blocks)
    counters[3] += n_workers * message_nbytes.py_func(n_blocks, dense_payload_bytes,
                                                      n_blocks, 1)


class CommunicationStats(Mapping):
    """Read-only mapping of communication totals of a fit.

    Keys: ``rounds``, ``uplink_bytes`` (worker -> master, all workers),
    ``downlink_bytes`` (master -> workers, counted once per receiving worker),
    ``dense_uplink_bytes`` (what ``sparsifier="none"`` would have sent over
    the same rounds), ``uplink_ratio`` (uplink / dense uplink) and
    ``blocks_sent`` (uplink blocks, all workers).  Engines that send real
    bytes add what they measured on the connections: ``wire_uplink_payload_bytes``
    (equal to ``uplink_bytes``), ``wire_uplink_framing_bytes`` and the same two
    for the downlink (counted once per receiving process).  An asynchronous
    fit counts each message as a round (one master update, and the model
    sent back to its sender alone) and adds ``max_staleness`` and
    ``mean_staleness`` (master updates between the model a message was
    computed at and its application) and ``held_messages`` (messages the
    staleness bound made wait).
    """

    def __init__(self, counters, wire_bytes=None, statistics=None):
        totals = {name: int(v) for name, v in zip(COUNTERS, counters)}
        dense = totals["dense_uplink_bytes"]
        totals["uplink_ratio"] = totals["uplink_bytes"] / dense if dense else float("nan")
        for name, value in (wire_bytes or {}).items():
            totals["wire_" + name] = int(value)
        totals.update(statistics or {})
        self._data = totals

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        return f"CommunicationStats({self._data!r})"


class History:
    """Per-epoch record; ``as_dict`` gives the ``history_`` attribute."""

    KEYS = ("objective", "rounds", "uplink_bytes", "seconds")

    def __init__(self):
        self._rows = []

    def record(self, objective, counters, seconds):
        self._rows.append((objective, counters[0], counters[1], seconds))

    @property
    def last_objective(self):
        return self._rows[-1][0]

    def as_dict(self):
        cols = list(zip(*self._rows)) if self._rows else [()] * 4
        dtypes = (np.float64, np.int64, np.int64, np.float64)
        return {k: np.asarray(c, dtype=t) for k, c, t in zip(self.KEYS, cols, dtypes)}
