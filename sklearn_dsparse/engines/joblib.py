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
each frame (reported as framing).  A task sends the messages of its workers
in one write (``_FrameChannel``) and, on small models, the master sends a
task the next epoch's command and the last broadcast in one write, so that
each process wakes once per round: on small models, wake-ups and system
calls, not bytes, are what a round costs.

The master's address is ``SKLEARN_DSPARSE_MASTER_ADDRESS`` (default
127.0.0.1; set it to an address the cluster's workers can reach), and tasks
that have not connected after ``SKLEARN_DSPARSE_CONNECT_TIMEOUT`` seconds
(default 60) make the fit fail: the backend could not run them all at once.
"""

import os
import queue
import select
import socket
import struct
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

import numpy as np
from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend
from numba import njit

from .._layout import flat, kernel_view, n_outputs
from ..accounting import count_message, count_round, new_counters
from ..master import aggregate_message, master_step
from ..messages import BLOCK_ID_BYTES, HEADER_BYTES, VALUE_BYTES
from ..solvers import GD, SAGA, init_saga_table
from ..worker import worker_round
from .base import Engine

FRAME_BYTES = 4  # multiprocessing.connection's length prefix
_HEADER = struct.Struct("<IIQ")  # sender, number of blocks, round
assert _HEADER.size == HEADER_BYTES
# The master's command before each epoch: its number of rounds, 0 to stop.
_COMMAND = struct.Struct("<Q")
_STOP = _COMMAND.pack(0)
# A task computes, then sends, the messages of as many of its workers at once
# as fit in max(n_columns * n_outputs, this) values (_WorkerGroup).
MIN_PACKED_VALUES = 1 << 17
# gd draws up to this many uniforms ahead (_WorkerGroup.epoch_uniforms).
DRAW_AHEAD_VALUES = 1 << 16
# Models of at most this many parameters send an epoch's last broadcast with
# the next command (JoblibEngine._send_command).  Measured on 2 cores: at 1e5
# parameters, waking the tasks once per round is worth more; at 1e6, moving
# and applying the broadcast (milliseconds) while the master steps is.
MAX_DEFERRED_PARAMETERS = 1 << 18


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


# multiprocessing.connection's frame prefix: the length as a big-endian int32,
# or -1 and then the length as a uint64 for frames of 2 GiB and more.
_FRAME_LENGTH = struct.Struct("!i")
_LONG_FRAME_LENGTH = struct.Struct("!Q")
_IOV_MAX = os.sysconf("SC_IOV_MAX")
READ_BUFFER_BYTES = 1 << 16


class _FrameChannel:
    """The rounds' traffic on a connection: its frames, in few system calls.

    The bytes on the wire are exactly those of one ``conn.send_bytes`` per
    frame (a 4-byte length, then the frame).  ``send`` writes all the frames
    it is given at once (``os.writev``: no copy) and ``recv`` reads whatever
    has arrived into a buffer, often a whole round's frames.  A process then
    wakes once per burst of frames rather than once per frame, and makes a
    system call or two per burst rather than two per frame: on the small
    models, wake-ups and system calls are most of a round (a wake-up costs
    tens of microseconds, a frame sent and received one by one about 7).

    A channel reads ahead: once it reads from a connection, all that comes
    after must be read through it.
    """

    def __init__(self, conn):
        self._fd = conn.fileno()
        self._buffer = bytearray(READ_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0  # buffer[start:end]: read, not consumed yet
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)

    def send(self, frames):
        """Send ``frames`` (bytes-like), as many ``conn.send_bytes`` would."""
        buffers = []
        for frame in frames:
            frame = memoryview(frame).cast("B")
            n = frame.nbytes
            buffers.append(_FRAME_LENGTH.pack(n) if n <= 0x7fffffff else
                           _FRAME_LENGTH.pack(-1) + _LONG_FRAME_LENGTH.pack(n))
            buffers.append(frame)
        first = 0
        while first < len(buffers):
            written = os.writev(self._fd, buffers[first:first + _IOV_MAX])
            while first < len(buffers) and written >= len(buffers[first]):
                written -= len(buffers[first])
                first += 1
            if written:  # a partial write: the rest of this buffer goes next
                buffers[first] = memoryview(buffers[first])[written:]

    def readable(self, timeout_ms):
        """Whether a frame has (begun to) come in within ``timeout_ms``."""
        return self._end > self._start or bool(self._poller.poll(timeout_ms))

    def recv(self):
        """The next frame (bytes-like), as ``conn.recv_bytes()`` would return it."""
        size = self._length(_FRAME_LENGTH)
        if size == -1:
            size = self._length(_LONG_FRAME_LENGTH)
        start = self._start
        if self._end - start >= size:
            self._start = start + size
            return bytes(self._view[start:start + size])
        # More than has come: read the rest straight into the frame.
        frame = bytearray(size)
        have = self._end - start
        frame[:have] = self._view[start:self._end]
        self._start = self._end = 0
        view = memoryview(frame)
        while have < size:
            have += self._read(view[have:])
        return frame

    def _length(self, prefix):
        if self._end - self._start < prefix.size:
            self._fill(prefix.size)
        length, = prefix.unpack_from(self._buffer, self._start)
        self._start += prefix.size
        return length

    def _fill(self, n):
        """Read until at least n (a few) bytes are buffered."""
        have = self._end - self._start
        self._buffer[:have] = self._view[self._start:self._end]
        self._start, self._end = 0, have
        while self._end < n:
            self._end += self._read(self._view[self._end:])

    def _read(self, view):
        n = os.readv(self._fd, [view])
        if n == 0:
            raise EOFError
        return n


def _message_frames(sender, rnd, block_ids, values):
    return _HEADER.pack(sender, len(block_ids), rnd), block_ids, values


def _recv_message(channel):
    sender, _, rnd = _HEADER.unpack(channel.recv())
    ids = channel.recv()
    values = channel.recv()
    return sender, rnd, ids, values


@njit(cache=True)
def _hosted_rounds(first, last, solver, loss_id, W, data, indices, indptr, Y, c,
                   alpha, abar, h, shard_starts, l2, fit_intercept,
                   use_control_variates, scale, sends_all, u_blocks, u_rows, batch,
                   starts, column_block, selected, block_list, rows, seen, estimate,
                   z, dz, ids_out, values_out, sizes):
    """One round of the hosted workers ``first..last-1``, their messages packed.

    The in-process engine's loop over its workers, minus the aggregation;
    ``u_blocks[i]`` and ``u_rows[i]`` are hosted worker i's uniforms of the
    round.  Message j (worker ``first + j``) is the next ``sizes[j, 0]`` ids
    of ``ids_out`` (none when it carries every block, as on the wire) and the
    next ``sizes[j, 1]`` values of ``values_out``.
    """
    n_blocks = starts.shape[0] - 1
    id_pos = 0
    value_pos = 0
    for i in range(first, last):
        s = shard_starts[i]
        e = shard_starts[i + 1]
        n_sel, n_val = worker_round(
            solver, loss_id, W, data, indices, indptr[s:e + 1], Y[s:e], c[s:e],
            alpha[s:e], abar[i], h[i], l2, fit_intercept, use_control_variates,
            scale, sends_all, u_blocks[i], u_rows[i], batch, starts, column_block,
            selected, block_list, rows, seen, estimate, z, dz, values_out[value_pos:])
        n_ids = 0 if n_sel == n_blocks else n_sel
        for j in range(n_ids):
            ids_out[id_pos + j] = block_list[j]
        sizes[i - first, 0] = n_ids
        sizes[i - first, 1] = n_val
        id_pos += n_ids
        value_pos += n_val


@njit(cache=True)
def _aggregate_messages(A, touched, ids, values, sizes, weights, starts, all_blocks,
                        counters):
    """A += the weighted messages laid out as ``_hosted_rounds`` packs them.

    Message j has ``sizes[j, 0]`` ids (none: every block) and ``sizes[j, 1]``
    values and weight ``weights[j]``; they are added in order, as the
    in-process engine adds them.  Counts their bytes and blocks.
    """
    n_blocks = starts.shape[0] - 1
    id_pos = 0
    value_pos = 0
    for j in range(weights.shape[0]):
        n_ids = sizes[j, 0]
        n_values = sizes[j, 1]
        message_values = values[value_pos:value_pos + n_values]
        if n_ids == 0:
            n_sel = n_blocks
            aggregate_message(A, touched, all_blocks, n_sel, starts, message_values,
                              weights[j])
        else:
            n_sel = n_ids
            aggregate_message(A, touched, ids[id_pos:id_pos + n_ids], n_sel, starts,
                              message_values, weights[j])
        count_message(counters, n_sel, n_values, n_blocks)
        id_pos += n_ids
        value_pos += n_values


@njit(cache=True)
def _gather_touched(A, touched, starts, ids_out, values_out):
    """The broadcast: the ids of the touched blocks and their values, in order.

    Returns the numbers of blocks and of values written.
    """
    K = n_outputs(A)
    a = flat(A)
    n_sent = 0
    pos = 0
    for b in range(touched.shape[0]):
        if touched[b]:
            ids_out[n_sent] = b
            n_sent += 1
            for i in range(starts[b] * K, starts[b + 1] * K):
                values_out[pos] = a[i]
                pos += 1
    return n_sent, pos


class _WorkerGroup:
    """The logical workers one task hosts, and its replica of the master.

    The hosted shards are one CSR matrix (``shard_starts`` cuts it) so that one
    compiled call computes the round of many hosted workers: the Python work
    per message is then only its three frames.
    """

    def __init__(self, spec):
        self.__dict__.update(spec)
        p1, K = self.W.shape
        n_hosted = len(self.worker_ids)
        self.hbar = np.zeros((p1, K))
        self.A = np.zeros((p1, K))
        self.touched = np.zeros(self.n_blocks, dtype=np.bool_)
        self.all_blocks = np.arange(self.n_blocks, dtype=np.int32)
        saga = self.solver == SAGA
        self.alpha = np.zeros((self.Y.shape[0] if saga else 0, K))
        self.abar = np.zeros((n_hosted, p1 if saga else 0, K))
        self.h = np.zeros((n_hosted, p1 if self.use_control_variates else 0, K))
        # The replica and the workers' state as the kernels take them (_layout).
        for name in ("W", "hbar", "A", "alpha", "abar", "h"):
            setattr(self, name, kernel_view(getattr(self, name)))
        if saga:
            for i in range(n_hosted):
                s, e = self.shard_starts[i], self.shard_starts[i + 1]
                init_saga_table(self.loss_id, self.W, self.data, self.indices,
                                self.indptr[s:e + 1], self.Y[s:e], self.c[s:e],
                                self.fit_intercept, self.alpha[s:e], self.abar[i])
        self.rngs = [np.random.default_rng(s) for s in self.seeds]
        self.shared_rng = np.random.default_rng(self.shared_seed)
        self.gd_uniforms_ahead = self.sparsifier.draw(self.rngs, self.shared_rng, 0)
        # Messages are packed a group of hosted workers at a time: as many as
        # fit in a buffer no smaller than the model (the scratch a worker needs
        # anyway), so that small models pack every hosted worker at once.
        n_sel_max = self.n_blocks if self.sends_all else \
            self.sparsifier.blocks_per_worker
        max_message = n_sel_max * int(np.max(np.diff(self.starts))) * K
        packed = max(p1 * K, MIN_PACKED_VALUES)
        self.workers_per_pack = max(1, min(n_hosted, packed // max_message))
        max_rows = int(np.max(np.diff(self.shard_starts)))
        self.scratch = dict(
            selected=np.zeros(self.n_blocks, dtype=np.bool_),
            block_list=np.empty(self.n_blocks, dtype=np.int64),
            rows=np.empty(max(self.batch_size, 1), dtype=np.int64),
            seen=np.zeros(max_rows, dtype=np.bool_), estimate=np.zeros_like(self.W),
            z=np.empty(K), dz=np.empty(K),
            ids_out=np.empty(self.workers_per_pack * n_sel_max, dtype=np.int32),
            values_out=np.empty(max(packed, max_message)),
            sizes=np.empty((self.workers_per_pack, 2), dtype=np.int64))

    def epoch_uniforms(self, n_rounds):
        """The uniforms of the next ``n_rounds`` rounds, as the in-process
        engine draws them: each epoch its block uniforms, then its row uniforms.

        gd draws no row uniforms, so the block uniforms of consecutive epochs
        follow each other in every stream and one draw serves many epochs (a
        draw costs about a microsecond per stream, as much as a small model's
        whole round).
        """
        if self.solver != GD:
            u_blocks = self.sparsifier.draw(self.rngs, self.shared_rng, n_rounds)
            u_rows = np.stack([rng.random((n_rounds, self.batch_size))
                               for rng in self.rngs])
            return u_blocks, u_rows
        ahead = self.gd_uniforms_ahead
        if ahead.shape[1] < n_rounds:
            per_round = max(1, len(self.worker_ids) * self.sparsifier.blocks_per_worker)
            n_more = max(n_rounds, DRAW_AHEAD_VALUES // per_round)
            ahead = np.concatenate(
                [ahead, self.sparsifier.draw(self.rngs, self.shared_rng, n_more)],
                axis=1)
        self.gd_uniforms_ahead = ahead[:, n_rounds:]
        return ahead[:, :n_rounds], np.empty((len(self.worker_ids), n_rounds, 0))

    def pack(self, first, u_blocks, u_rows):
        """Compute the messages of the pack of hosted workers starting at
        ``first``; returns the index of the first worker after the pack."""
        s = self.scratch
        last = min(first + self.workers_per_pack, len(self.worker_ids))
        _hosted_rounds(
            first, last, self.solver, self.loss_id, self.W, self.data, self.indices,
            self.indptr, self.Y, self.c, self.alpha, self.abar, self.h,
            self.shard_starts, self.l2, self.fit_intercept,
            self.use_control_variates, self.scale, self.sends_all, u_blocks, u_rows,
            self.batch_size, self.starts, self.column_block, s["selected"],
            s["block_list"], s["rows"], s["seen"], s["estimate"], s["z"], s["dz"],
            s["ids_out"], s["values_out"], s["sizes"])
        return last

    def send_pack(self, channel, rnd, first, last):
        s = self.scratch
        ids_out, values_out = s["ids_out"], s["values_out"]
        id_pos = value_pos = 0
        frames = []
        for sender, (n_ids, n_values) in zip(self.worker_ids[first:last],
                                             s["sizes"][:last - first].tolist()):
            frames += _message_frames(sender, rnd, ids_out[id_pos:id_pos + n_ids],
                                      values_out[value_pos:value_pos + n_values])
            id_pos += n_ids
            value_pos += n_values
        channel.send(frames)

    def apply_broadcast(self, channel):
        _, _, ids, values = _recv_message(channel)
        ids = np.frombuffer(ids, dtype=np.int32) if ids else self.all_blocks
        values = np.frombuffer(values, dtype=np.float64)
        aggregate_message(self.A, self.touched, ids, ids.size, self.starts, values,
                          1.0)
        master_step(self.W, self.hbar, self.A, self.touched, self.starts, self.step,
                    self.l1, self.fit_intercept, self.use_control_variates,
                    self.cv_fraction)

    def run(self, channel):
        """Run the epochs the master commands until it says stop.

        On small models the broadcast of an epoch's last round comes after
        the next command (``JoblibEngine._send_command``).
        """
        n_hosted = len(self.worker_ids)
        broadcast_pending = False
        while True:
            n_rounds, = _COMMAND.unpack(channel.recv())
            if broadcast_pending:
                self.apply_broadcast(channel)
            if n_rounds == 0:
                return
            u_blocks, u_rows = self.epoch_uniforms(n_rounds)
            for rnd in range(n_rounds):
                if rnd > 0:
                    self.apply_broadcast(channel)
                packed = 0
                while packed < n_hosted:
                    first, packed = packed, self.pack(packed, u_blocks[:, rnd],
                                                      u_rows[:, rnd])
                    self.send_pack(channel, rnd, first, packed)
            if self.broadcast_with_command:
                broadcast_pending = True
            else:
                self.apply_broadcast(channel)


def serve(address, authkey):
    """The body of a worker task: host logical workers until told to stop."""
    from threadpoolctl import threadpool_limits

    try:
        conn = Client(address, authkey=authkey)
    except OSError:
        return  # the fit ended (or failed) before this task could start
    try:
        _no_delay(conn)  # both ends: rounds are small writes
        conn.send(os.getpid())
        # Workers share the cores with each other: one BLAS thread each.
        with threadpool_limits(1):
            group = _WorkerGroup(conn.recv())
            group.run(_FrameChannel(conn))
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
        self._channels = []
        self._listener = None
        self._thread = None
        self._task_errors = []
        self._in_epoch = False
        self._pending_broadcast = None
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
        self._first_hosted = [int(g[0]) for g in groups]
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
        m = pb.partition.n_blocks
        self._hbar = np.zeros((p1, K))
        self._A = np.zeros((p1, K))
        self._touched = np.zeros(m, dtype=np.bool_)
        self._all_blocks = np.arange(m, dtype=np.int32)
        self._broadcast_ids = np.empty(m, dtype=np.int32)
        self._broadcast_values = np.empty(p1 * K)
        self._message_sizes = np.empty((max(self._hosted), 2), dtype=np.int64)
        self._broadcast_with_command = p1 * K <= MAX_DEFERRED_PARAMETERS
        X = pb.X
        for conn, group in zip(self._conns, groups):
            s, e = pb.shard_starts[group[0]], pb.shard_starts[group[-1] + 1]
            rows = X[s:e]
            conn.send(dict(
                worker_ids=[int(i) for i in group], data=rows.data,
                indices=rows.indices, indptr=rows.indptr, Y=pb.Y[s:e], c=pb.c[s:e],
                shard_starts=pb.shard_starts[group[0]:group[-1] + 2] - s,
                seeds=[seed_sequences[i] for i in group], shared_seed=seed_sequences[n],
                W=self._W.copy(), solver=pb.solver, loss_id=pb.loss.id,
                l2=pb.penalty.l2, l1=pb.penalty.l1, fit_intercept=pb.fit_intercept,
                use_control_variates=pb.use_control_variates, scale=pb.sparsifier.scale,
                sends_all=pb.sparsifier.sends_all, sparsifier=pb.sparsifier,
                batch_size=pb.batch_size, starts=pb.partition.starts,
                column_block=pb.partition.column_block, n_blocks=m,
                step=pb.step_size, cv_fraction=1.0 / pb.sparsifier.scale,
                broadcast_with_command=self._broadcast_with_command))
        self._channels = [_FrameChannel(conn) for conn in self._conns]
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

    def _wait_readable(self, channel):
        while not channel.readable(500):
            self._raise_task_error()

    def _receive_messages(self, channel, first, n_hosted, rnd):
        """Receive the messages of workers ``first..first+n_hosted-1`` and add
        them to A, in worker order."""
        self._wait_readable(channel)
        id_frames, value_frames = [], []
        sizes = self._message_sizes[:n_hosted]
        for j in range(n_hosted):
            sender, sent_in, ids, values = _recv_message(channel)
            if sender != first + j or sent_in != rnd:
                raise WorkerProcessError(
                    f"expected the message of worker {first + j} in round {rnd}, "
                    f"got worker {sender}'s of round {sent_in}")
            id_frames.append(ids)
            value_frames.append(values)
            sizes[j] = len(ids) // BLOCK_ID_BYTES, len(values) // VALUE_BYTES
        # One compiled call for all the messages of the task; a task hosting
        # one worker has nothing to join (a large frame is a bytearray, which
        # join would copy).
        ids, values = (id_frames[0], value_frames[0]) if n_hosted == 1 else \
            (b"".join(id_frames), b"".join(value_frames))
        pb = self.problem
        _aggregate_messages(self._A, self._touched, np.frombuffer(ids, dtype=np.int32),
                            np.frombuffer(values, dtype=np.float64), sizes,
                            pb.weights[first:first + n_hosted], pb.partition.starts,
                            self._all_blocks, self._counters)
        self.wire["uplink_payload_bytes"] += n_hosted * HEADER_BYTES + len(ids) + \
            len(values)
        self.wire["uplink_framing_bytes"] += n_hosted * 3 * FRAME_BYTES

    def _gather_broadcast(self):
        """A on the blocks sent (the union), copied out before the step clears A."""
        n_sent, n_values = _gather_touched(self._A, self._touched,
                                           self.problem.partition.starts,
                                           self._broadcast_ids, self._broadcast_values)
        ids = self._broadcast_ids[:0 if n_sent == self.problem.partition.n_blocks
                                  else n_sent]
        values = self._broadcast_values[:n_values]
        n_conns = len(self._conns)
        self.wire["downlink_payload_bytes"] += n_conns * (
            HEADER_BYTES + ids.nbytes + values.nbytes)
        self.wire["downlink_framing_bytes"] += n_conns * 3 * FRAME_BYTES
        return ids, values

    def _send_command(self, command):
        """The command to every task, then the last round's broadcast if pending.

        On models of up to ``MAX_DEFERRED_PARAMETERS``, the broadcast of an
        epoch's last round waits for the next command (or the stop) and goes
        in the same write: a task then wakes once per round, as inside an
        epoch, rather than once for the broadcast and once more for the
        command (a wake-up costs tens of microseconds, as much as a small
        model's round).  ``wire_bytes`` counts it when it is made.
        """
        pending, self._pending_broadcast = self._pending_broadcast, None
        frames = [command]
        if pending is not None:
            frames += _message_frames(0, *pending)
        for channel in self._channels:
            channel.send(frames)

    def run_epoch(self, n_rounds):
        pb = self.problem
        n, m = pb.n_workers, pb.partition.n_blocks
        self._in_epoch = True
        try:
            self._send_command(_COMMAND.pack(n_rounds))
            for rnd in range(n_rounds):
                for channel, first, n_hosted in zip(self._channels, self._first_hosted,
                                                     self._hosted):
                    self._receive_messages(channel, first, n_hosted, rnd)
                ids, values = self._gather_broadcast()
                if rnd < n_rounds - 1 or not self._broadcast_with_command:
                    frames = _message_frames(0, rnd, ids, values)
                    for channel in self._channels:
                        channel.send(frames)
                else:
                    self._pending_broadcast = (rnd, ids, values)
                nb, nv = master_step(self._W, self._hbar, self._A, self._touched,
                                     pb.partition.starts, pb.step_size, pb.penalty.l1,
                                     pb.fit_intercept, pb.use_control_variates,
                                     1.0 / pb.sparsifier.scale)
                count_round(self._counters, n, nb, nv, m, self._W.size)
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
        if not self._in_epoch:
            try:
                self._send_command(_STOP)
            except OSError:
                pass
        for conn in self._conns:
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
        self._channels = []
