"""Bytes up and down, and the per-epoch history.

Bytes are counted where messages are made (``messages.message_nbytes``, called
inside the round); this module only accumulates and presents them.
"""

from collections.abc import Mapping

import numpy as np

#: Order of the int64 counters a round loop increments.
COUNTERS = ("rounds", "uplink_bytes", "downlink_bytes", "dense_uplink_bytes",
            "blocks_sent")


def new_counters():
    return np.zeros(len(COUNTERS), dtype=np.int64)


class CommunicationStats(Mapping):
    """Read-only mapping of communication totals of a fit.

    Keys: ``rounds``, ``uplink_bytes`` (worker -> master, all workers),
    ``downlink_bytes`` (master -> workers, counted once per receiving worker),
    ``dense_uplink_bytes`` (what ``sparsifier="none"`` would have sent over
    the same rounds), ``uplink_ratio`` (uplink / dense uplink) and
    ``blocks_sent`` (uplink blocks, all workers).  Engines that send real
    bytes add what they measured on the connections: ``wire_uplink_payload_bytes``
    (equal to ``uplink_bytes``), ``wire_uplink_framing_bytes`` and the same two
    for the downlink (counted once per receiving process).
    """

    def __init__(self, counters, wire_bytes=None):
        totals = {name: int(v) for name, v in zip(COUNTERS, counters)}
        dense = totals["dense_uplink_bytes"]
        totals["uplink_ratio"] = totals["uplink_bytes"] / dense if dense else float("nan")
        for name, value in (wire_bytes or {}).items():
            totals["wire_" + name] = int(value)
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

    def as_dict(self):
        cols = list(zip(*self._rows)) if self._rows else [()] * 4
        dtypes = (np.float64, np.int64, np.int64, np.float64)
        return {k: np.asarray(c, dtype=t) for k, c, t in zip(self.KEYS, cols, dtypes)}
