"""Workers as long-lived tasks on the active joblib backend (loky, Dask, ...).

The driver is the master.  It listens on an authenticated
``multiprocessing.connection.Listener`` (a fresh random key per fit) and
launches ``n_procs = min(n_jobs, n_workers)`` tasks through ``joblib.Parallel``
on whatever backend is active (loky by default; ``parallel_config(backend=
"dask")`` sends them to a Dask cluster).  Each task connects back, receives the
shards and state of the logical workers it hosts, and then, every round, runs
``worker.worker_round`` for each of them, sends their messages, receives the
master's broadcast (the aggregated message on the union of the blocks sent)
and applies ``master.master_step`` to its own replica of W and hbar.  The
master applies the same step to the same broadcast, so every node holds the
same W, bit for bit, and the iterates are those of the in-process engine.

A message travels as three frames of the connection: the 16-byte header
(sender uint32, number of blocks uint32, round uint64), the int32 block ids
(empty when all blocks are sent) and the float64 values: exactly the bytes
``messages.message_nbytes`` counts; the connection adds a 4-byte length to
each frame (reported as framing).

The master's address is ``SKLEARN_DSPARSE_MASTER_ADDRESS`` (default
127.0.0.1; set it to an address the cluster's workers can reach), and tasks
that have not connected after ``SKLEARN_DSPARSE_CONNECT_TIMEOUT`` seconds
(default 60) make the fit fail: the backend could not run them all at once.
"""

import os
import queue
import socket
import struct
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener, wait

import numpy as np
from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend

from ..accounting import new_counters
from ..master import aggregate_message, master_step
from ..messages import HEADER_BYTES, message_nbytes
from ..solvers import GD, SAGA, init_saga_table
from ..worker import worker_round
from .base import Engine

FRAME_BYTES = 4  # multiprocessing.connection's length prefix
_HEADER = struct.Struct("<IIQ")  # sender, number of blocks, round
assert _HEADER.size == HEADER_BYTES


class WorkerProcessError(RuntimeError):
    """A worker task died or could not be started."""


def _no_delay(conn):
    # Rounds are small request/response exchanges: Nagle's algorithm would
    # hold every message back (measured 5x slower rounds without this).
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        sock.close()


def _send_message(conn, sender, rnd, block_ids, values):
    conn.send_bytes(_HEADER.pack(sender, len(block_ids), rnd))
    conn.send_bytes(block_ids)
    conn.send_bytes(values)


def _recv_message(conn):
    sender, _, _ = _HEADER.unpack(conn.recv_bytes())
    ids = conn.recv_bytes()
    values = conn.recv_bytes()
    wire = len(ids) + len(values) + HEADER_BYTES
    return (sender, np.frombuffer(ids, dtype=np.int32),
            np.frombuffer(values, dtype=np.float64), wire)


class _WorkerGroup:
    """The logical workers one task hosts, and its replica of the master."""

    def __init__(self, spec):
        self.__dict__.update(spec)
        p1, K = self.W.shape
        self.hbar = np.zeros((p1, K))
        self.A = np.zeros((p1, K))
        self.touched = np.zeros(self.n_blocks, dtype=np.bool_)
        self.states = []
        for shard in self.shards:
            data, indices, indptr, Y, c = shard
            alpha = np.zeros((Y.shape[0] if self.solver == SAGA else 0, K))
            abar = np.zeros((p1 if self.solver == SAGA else 0, K))
            if self.solver == SAGA:
                init_saga_table(self.loss_id, self.W, data, indices, indptr, Y, c,
                                self.fit_intercept, alpha, abar)
            h = np.zeros((p1 if self.use_control_variates else 0, K))
            self.states.append((alpha, abar, h))
        self.rngs = [np.random.default_rng(s) for s in self.seeds]
        self.shared_rng = np.random.default_rng(self.shared_seed)
        max_rows = max(s[3].shape[0] for s in self.shards)
        self.scratch = dict(
            selected=np.zeros(self.n_blocks, dtype=np.bool_),
            block_list=np.empty(self.n_blocks, dtype=np.int64),
            rows=np.empty(max(self.batch_size, 1), dtype=np.int64),
            seen=np.zeros(max_rows, dtype=np.bool_), estimate=np.zeros((p1, K)),
            z=np.empty(K), dz=np.empty(K), values=np.empty(p1 * K))

    def run_epoch(self, conn, n_rounds):
        u_blocks = self.sparsifier.draw(self.rngs, self.shared_rng, n_rounds)
        width = 0 if self.solver == GD else self.batch_size
        u_rows = np.stack([rng.random((n_rounds, width)) for rng in self.rngs])
        s = self.scratch
        for rnd in range(n_rounds):
            for local, (shard, (alpha, abar, h)) in enumerate(
                    zip(self.shards, self.states)):
                data, indices, indptr, Y, c = shard
                n_sel, n_val = worker_round(
                    self.solver, self.loss_id, self.W, data, indices, indptr, Y, c,
                    alpha, abar, h, self.l2, self.fit_intercept,
                    self.use_control_variates, self.scale, self.sends_all,
                    u_blocks[local, rnd], u_rows[local, rnd], self.batch_size,
                    self.starts, self.column_block, s["selected"], s["block_list"],
                    s["rows"], s["seen"], s["estimate"], s["z"], s["dz"], s["values"])
                ids = (np.empty(0, dtype=np.int32) if n_sel == self.n_blocks
                       else s["block_list"][:n_sel].astype(np.int32))
                _send_message(conn, self.worker_ids[local], rnd, ids,
                              s["values"][:n_val])
            _, ids, values, _ = _recv_message(conn)
            if ids.size == 0:
                ids = np.arange(self.n_blocks, dtype=np.int32)
            aggregate_message(self.A, self.touched, ids, ids.size, self.starts,
                              values, 1.0)
            master_step(self.W, self.hbar, self.A, self.touched, self.starts,
                        self.step, self.l1, self.fit_intercept,
                        self.use_control_variates, self.cv_fraction)


def serve(address, authkey):
    """The body of a worker task: host logical workers until told to stop."""
    from threadpoolctl import threadpool_limits

    try:
        conn = Client(address, authkey=authkey)
    except OSError:
        return  # the fit ended (or failed) before this task could start
    try:
        _no_delay(conn)  # both ends: a message is three small writes
        conn.send(os.getpid())
        # Workers share the cores with each other: one BLAS thread each.
        with threadpool_limits(1):
            group = _WorkerGroup(conn.recv())
            while True:
                command, n_rounds = conn.recv()
                if command == "stop":
                    return
                group.run_epoch(conn, n_rounds)
    except (EOFError, OSError):
        return  # the master has gone; it reports why
    finally:
        conn.close()


class JoblibEngine(Engine):
    """Run the workers as ``n_jobs`` long-lived tasks of the active joblib backend."""

    def __init__(self, n_jobs):
        self.n_jobs = n_jobs
        self.address = os.environ.get("SKLEARN_DSPARSE_MASTER_ADDRESS", "127.0.0.1")
        self.timeout = float(os.environ.get("SKLEARN_DSPARSE_CONNECT_TIMEOUT", 60))
        self._conns = []
        self._listener = None
        self._thread = None
        self._task_errors = []
        self._in_epoch = False
        self._closing = False
        self._accepted = None
        self.pids = []

    def start(self, problem, coef, seed_sequences):
        pb = self.problem = problem
        n = pb.n_workers
        backend, _ = get_active_backend()
        n_procs = min(n, self._effective_n_jobs(backend))
        groups = np.array_split(np.arange(n), n_procs)
        self._hosted = [len(g) for g in groups]
        key = os.urandom(32)
        self._listener = Listener((self.address, 0), authkey=key, backlog=n_procs)
        self.master_address = self._listener.address
        accepted = self._accepted = queue.Queue()
        threading.Thread(target=self._accept, args=(accepted,), daemon=True).start()
        self._thread = threading.Thread(
            target=self._run_tasks, args=(backend, n_procs, self.master_address, key),
            daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while len(self._conns) < n_procs:
            self._raise_task_error()
            if time.monotonic() > deadline:
                raise WorkerProcessError(
                    f"only {len(self._conns)} of {n_procs} worker tasks started within "
                    f"{self.timeout:g} s: the joblib backend cannot run them all at "
                    f"once. Lower n_jobs (or n_workers), or give the backend more "
                    f"workers; SKLEARN_DSPARSE_CONNECT_TIMEOUT sets the wait.")
            try:
                conn = accepted.get(timeout=0.05)
            except queue.Empty:
                continue
            _no_delay(conn)
            self.pids.append(conn.recv())
            self._conns.append(conn)
        self._W = np.array(coef, dtype=np.float64, order="C")
        p1, K = self._W.shape
        self._hbar = np.zeros((p1, K))
        self._A = np.zeros((p1, K))
        self._touched = np.zeros(pb.partition.n_blocks, dtype=np.bool_)
        X = pb.X
        for conn, group in zip(self._conns, groups):
            shards = []
            for i in group:
                s, e = pb.shard_starts[i], pb.shard_starts[i + 1]
                rows = X[s:e]
                shards.append((rows.data, rows.indices, rows.indptr, pb.Y[s:e],
                               pb.c[s:e]))
            conn.send(dict(
                worker_ids=[int(i) for i in group], shards=shards,
                seeds=[seed_sequences[i] for i in group], shared_seed=seed_sequences[n],
                W=self._W.copy(), solver=pb.solver, loss_id=pb.loss.id,
                l2=pb.penalty.l2, l1=pb.penalty.l1, fit_intercept=pb.fit_intercept,
                use_control_variates=pb.use_control_variates, scale=pb.sparsifier.scale,
                sends_all=pb.sparsifier.sends_all, sparsifier=pb.sparsifier,
                batch_size=pb.batch_size, starts=pb.partition.starts,
                column_block=pb.partition.column_block, n_blocks=pb.partition.n_blocks,
                step=pb.step_size, cv_fraction=1.0 / pb.sparsifier.scale))
        self._counters = new_counters()
        self.wire = dict(uplink_payload_bytes=0, uplink_framing_bytes=0,
                         downlink_payload_bytes=0, downlink_framing_bytes=0)
        return self

    def _effective_n_jobs(self, backend):
        n_jobs = self.n_jobs
        try:
            return max(1, backend.effective_n_jobs(n_jobs))
        except Exception:  # a backend without a notion of slots: trust n_jobs
            return max(1, n_jobs if n_jobs and n_jobs > 0 else 1)

    def _accept(self, accepted):
        while not self._closing:
            try:
                accepted.put(self._listener.accept())
            except (AuthenticationError, EOFError, OSError, AttributeError):
                # A client without this fit's key is refused; keep serving
                # until close() (which wakes this thread up by connecting).
                continue

    def _run_tasks(self, backend, n_procs, address, key):
        try:
            with parallel_config(backend=backend):
                Parallel(n_jobs=n_procs)(
                    delayed(serve)(address, key) for _ in range(n_procs))
        except BaseException as exc:  # reported by the master's next wait
            self._task_errors.append(exc)

    def _raise_task_error(self):
        if self._task_errors:
            raise WorkerProcessError(
                f"a worker task failed: {self._task_errors[0]!r}") from \
                self._task_errors[0]

    def _wait_readable(self, conn):
        if conn.poll():
            return
        while not wait([conn], timeout=0.5):
            self._raise_task_error()

    def run_epoch(self, n_rounds):
        pb = self.problem
        n, m = pb.n_workers, pb.partition.n_blocks
        starts = pb.partition.starts
        dense_nbytes = message_nbytes(m, self._W.size, m, 8)
        self._in_epoch = True
        try:
            for conn in self._conns:
                conn.send(("epoch", n_rounds))
            for rnd in range(n_rounds):
                messages = [None] * n
                for conn, hosted in zip(self._conns, self._hosted):
                    for _ in range(hosted):
                        self._wait_readable(conn)
                        sender, ids, values, payload = _recv_message(conn)
                        messages[sender] = (ids, values)
                        self.wire["uplink_payload_bytes"] += payload
                        self.wire["uplink_framing_bytes"] += 3 * FRAME_BYTES
                for i, (ids, values) in enumerate(messages):
                    if ids.size == 0:
                        ids = np.arange(m, dtype=np.int32)
                    aggregate_message(self._A, self._touched, ids, ids.size, starts,
                                      values, pb.weights[i])
                    self._counters[1] += message_nbytes(ids.size, values.size, m, 8)
                    self._counters[4] += ids.size
                sent = np.flatnonzero(self._touched).astype(np.int32)
                values = np.concatenate([self._A[starts[b]:starts[b + 1]].ravel()
                                         for b in sent])
                wire_ids = np.empty(0, dtype=np.int32) if sent.size == m else sent
                for conn in self._conns:
                    _send_message(conn, 0, rnd, wire_ids, values)
                payload = HEADER_BYTES + wire_ids.nbytes + values.nbytes
                self.wire["downlink_payload_bytes"] += len(self._conns) * payload
                self.wire["downlink_framing_bytes"] += len(self._conns) * 3 * FRAME_BYTES
                nb, nv = master_step(self._W, self._hbar, self._A, self._touched,
                                     starts, pb.step_size, pb.penalty.l1,
                                     pb.fit_intercept, pb.use_control_variates,
                                     1.0 / pb.sparsifier.scale)
                self._counters[0] += 1
                self._counters[2] += n * message_nbytes(nb, nv, m, 8)
                self._counters[3] += n * dense_nbytes
            self._in_epoch = False
        except (EOFError, OSError) as exc:
            self._raise_task_error()
            raise WorkerProcessError(
                f"lost the connection to a worker process ({exc!r}): it was killed "
                "or crashed. The fit is abandoned.") from exc


    @property
    def wire_bytes(self):
        """Bytes measured on the connections: payload and framing, each way."""
        return dict(self.wire)

    def close(self):
        # Between epochs the tasks wait for a command; mid-epoch (an error, an
        # interrupt) they wait for a broadcast, and a closed connection ends them.
        for conn in self._conns:
            if not self._in_epoch:
                try:
                    conn.send(("stop", 0))
                except OSError:
                    pass
            conn.close()
        if self._listener is not None:
            self._closing = True
            self._listener.close()
            # A thread blocked in accept() keeps the port open: wake it up.
            try:
                socket.create_connection(self.master_address, timeout=1).close()
            except OSError:
                pass
            while self._accepted is not None and not self._accepted.empty():
                self._accepted.get().close()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout)
        self._conns = []
