"""Engines for solvers whose master decides every round (``solver="newton"``).

Such a fit takes tens of rounds, each a pass over every shard, so the round
is driven from Python: ``round(op, payload)`` broadcasts an operation and a
vector, every logical worker answers with one message
(``NewtonWorkers.respond``), and the master (``NewtonMaster``) receives the
messages in worker order and returns the round's result.  The in-process
engine hands the messages over as the workers made them; the joblib engine
moves each as one frame of ``multiprocessing.connection`` holding the bytes
``messages`` lays out (its header, its block ids, its values), which the
master decodes and receives in the same order, so the model is the same, bit
for bit.  The tasks are launched as ``_tasks`` describes; this transport is
the standard library's, so it runs wherever joblib does.
"""

import time
from functools import partial

import numpy as np
from threadpoolctl import ThreadpoolController

from .._dask_data import local_rows
from ..exceptions import WorkerProcessError
from ..messages import HEADER_BYTES, decode_header, encode
from ..newton import OP_STOP, NewtonWorkers, worker_spec
from ._tasks import READY, WIRE_BYTES, TaskEngine, serve
from .base import Engine

#: A command: operation (uint32), 0 (uint32), round (uint64), then the payload.
COMMAND_HEADER = np.dtype([("op", "<u4"), ("zero", "<u4"), ("round", "<u8")])
#: ``multiprocessing.connection`` prefixes a frame with its length: 4 bytes,
#: or 4 + 8 from 2 GiB.
_LONG_FRAME = 0x7FFFFFFF


def _framing(n_bytes):
    return 4 if n_bytes <= _LONG_FRAME else 12


_controller = None


def _one_blas_thread():
    """Limit BLAS to one thread until ``restore_original_limits()``; the
    controller (a scan of the loaded libraries, milliseconds) is made once."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1)


class InProcessRoundEngine(Engine):
    """Every worker in this process (``n_jobs=None``), with one BLAS thread
    as a worker task has (the same answers, bit for bit)."""

    def start(self, problem, master, seed_sequences):
        self.master = master
        self._counters = master.counters
        self._limits = _one_blas_thread()
        workers = np.arange(problem.n_workers)
        spec = worker_spec(problem, workers, seed_sequences)
        if problem.data is not None:  # files, read here: one process was asked for
            spec = _with_rows(spec, problem.data.parts_of(workers))
        self.workers = NewtonWorkers(spec)
        return self

    def close(self):
        if getattr(self, "_limits", None) is not None:
            self._limits.restore_original_limits()
            self._limits = None

    def round(self, op, payload):
        self.master.begin(op, payload)
        for worker, message in enumerate(self.workers.respond(op, payload)):
            self.master.receive(worker, *message)
        return self.master.finish()


def _with_rows(spec, shards):
    """``spec`` with the rows of its workers' shards (``local_rows``)."""
    return dict(spec, **local_rows(shards, spec["targets"], spec["row_scales"]))


def _host_rounds(conn, shards=None):
    """A task's loop: answer every command until the stop.  ``shards``: its
    workers' pieces, when they hold data that lives elsewhere (partitions on
    the cluster, files)."""
    spec = conn.recv()
    if shards is not None:
        spec = _with_rows(spec, shards)
    workers = NewtonWorkers(spec)
    conn.send(READY)
    n_blocks = len(workers.starts) - 1
    while True:
        command = conn.recv_bytes()
        header = np.frombuffer(command, COMMAND_HEADER, count=1)[0]
        op, rnd = int(header["op"]), int(header["round"])
        if op == OP_STOP:
            return
        payload = np.frombuffer(command, np.float64, offset=COMMAND_HEADER.itemsize)
        for worker, (ids, n_sel, values, tail) in zip(
                workers.worker_ids, workers.respond(op, payload.copy())):
            n_ids = 0 if n_sel == n_blocks else n_sel  # all blocks: no ids
            conn.send_bytes(encode(worker, rnd, ids, n_ids, values.as_bytes(), tail))


def serve_rounds(address, authkey, idle_timeout, local=None):
    """The body of a worker task of ``JoblibRoundEngine``; ``local``, for data
    that lives elsewhere: (the task's index, its workers' pieces)."""
    task, shards = (None, None) if local is None else local
    return serve(address, authkey, partial(_host_rounds, shards=shards), idle_timeout,
                 task)


class JoblibRoundEngine(TaskEngine):
    """Run the workers as ``n_jobs`` long-lived tasks of the active joblib backend."""

    def __init__(self, n_jobs, master_address=None):
        super().__init__(n_jobs, master_address)
        self._wire = np.zeros(4, dtype=np.int64)
        self._rounds = 0

    def start(self, problem, master, seed_sequences):
        self.master = master
        self._counters = master.counters
        groups = self._launch(problem.n_workers, serve_rounds, problem.data)
        for conn, group in zip(self._conns, groups):
            conn.send(worker_spec(problem, group, seed_sequences))
        self._await_ready()
        partition = problem.partition
        # The values a block holds, and the ids of a message of every block.
        self._sizes = partition.sizes * problem.n_outputs
        self._all_blocks = np.arange(partition.n_blocks, dtype=np.int32)
        return self

    def _broadcast(self, op, payload):
        command = np.empty(COMMAND_HEADER.itemsize + payload.nbytes, dtype=np.uint8)
        command[:COMMAND_HEADER.itemsize].view(COMMAND_HEADER)[0] = (op, 0, self._rounds)
        command[COMMAND_HEADER.itemsize:] = payload.view(np.uint8)
        for task, conn in enumerate(self._conns):
            try:
                conn.send_bytes(command)
            except BlockingIOError:  # the task reads nothing: the deadline
                raise self._deadline_error(task, self._armed) from None
            self._wire[2] += command.nbytes
            self._wire[3] += _framing(command.nbytes)

    def round(self, op, payload):
        master = self.master
        started = time.perf_counter()
        task = 0
        try:
            self._broadcast(op, np.ascontiguousarray(payload, dtype=np.float64))
            master.begin(op, payload)
            for task, (conn, group) in enumerate(zip(self._conns, self._groups)):
                for worker in group:
                    frame = np.frombuffer(conn.recv_bytes(), dtype=np.uint8)
                    self._wire[0] += frame.nbytes
                    self._wire[1] += _framing(frame.nbytes)
                    master.receive(worker, *self._decode(op, worker, frame))
        except BlockingIOError:  # the round deadline (set_timeouts)
            raise self._deadline_error(task, time.perf_counter() - started) from None
        except (EOFError, OSError) as exc:
            self._raise_task_error()
            raise WorkerProcessError(
                f"lost the connection to a worker process ({exc!r}): it was killed "
                "or crashed. The fit is abandoned.") from exc
        self._rounds += 1
        self._record_round(time.perf_counter() - started)
        return master.finish()

    def _decode(self, op, worker, frame):
        """(block_ids, n_sel, values, tail) of ``worker``'s message in ``frame``."""
        header = decode_header(frame)
        if header is not None:
            sender, n_ids, rnd, ids = header
            m = len(self._sizes)
            if sender == worker and rnd == self._rounds and n_ids <= m and \
                    np.all(ids < m) and np.all(ids >= 0):
                n_sel, ids = (m, self._all_blocks) if n_ids == 0 else (n_ids, ids)
                start = HEADER_BYTES + 4 * n_ids
                master = self.master
                tail_bytes = master.tail_length * master.tail_dtype.itemsize
                if n_ids == 0 and frame.nbytes == start + tail_bytes:
                    n_sel, ids = 0, ids[:0]  # no blocks (messages.py): the tail only
                n_values = int(np.sum(self._sizes[ids]))
                end = start + master.format.nbytes(n_values)
                if frame.nbytes == end + tail_bytes:
                    values = master.format.from_bytes(frame[start:end], n_values)
                    tail = np.frombuffer(frame[end:].tobytes(), dtype=master.tail_dtype)
                    return ids, n_sel, values, tail
        raise WorkerProcessError(
            f"expected the message of worker {worker} in round {self._rounds}, got "
            f"{frame.nbytes} bytes that are not: the workers run another version of "
            "sklearn-dsparse?")

    @property
    def wire_bytes(self):
        """Bytes measured on the connections: payload and framing, each way."""
        return {name: int(v) for name, v in zip(WIRE_BYTES, self._wire)}

    def close(self):
        for conn in self._conns:
            try:
                self._broadcast_to(conn, OP_STOP)
            except OSError:
                pass
        self._close_tasks()

    def _broadcast_to(self, conn, op):
        command = np.zeros(COMMAND_HEADER.itemsize, dtype=np.uint8)
        command.view(COMMAND_HEADER)[0] = (op, 0, self._rounds)
        conn.send_bytes(command)
