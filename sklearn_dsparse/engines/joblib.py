"""Workers as long-lived tasks on the active joblib backend (loky, Dask, ...).

The driver is the master.  It listens on an authenticated
``multiprocessing.connection.Listener`` (a fresh random key per fit) and
launches ``n_procs = min(n_jobs, n_workers)`` tasks through ``joblib.Parallel``
on whatever backend is active (loky by default; ``parallel_config(backend=
"dask")`` sends them to a Dask cluster).  Each task connects back, receives the
shards and state of the logical workers it hosts, and then, every round, runs
the two halves of ``worker.worker_round`` for each of them, sends their
messages, receives the master's broadcast (the aggregated message on the
union of the blocks sent) and applies ``master.step_from_broadcast`` to its
own replica of W and hbar.  The master applies the same step to the same
broadcast, so every node holds the same W, bit for bit, and the iterates are
those of the in-process engine (whose ``master.master_step`` does the same
arithmetic).

Each message travels as one frame of the connection holding exactly the
bytes ``messages.message_nbytes`` counts, in the layout of ``messages``; the
connection adds a 4-byte length (reported as framing).  On wide models a
round is memory-bound, so nothing is copied that need not be: a worker emits
its message straight into its frame, the master aggregates from its read
buffer into A, which lies in its broadcast frame, and every node steps from
the broadcast message itself.  On small models, wake-ups and system calls,
not bytes, are what a round costs: a task computes and frames the messages
of its workers in one compiled call and sends them in one write; the master
reads a task's messages in one read and aggregates them in one compiled call
(``_transport``); and the master sends a task the next epoch's command and
the last broadcast in one write, so that each process wakes once per round.

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
from multiprocessing.connection import Client, Listener

import numpy as np
from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend
from numba import njit

from .._layout import flat, kernel_view, n_outputs
from ..accounting import count_message, count_round, new_counters
from ..master import aggregate_message, step_from_broadcast
from ..messages import (BLOCK_ID_BYTES, HEADER_BYTES, VALUE_BYTES, copy_into,
                        message_nbytes, read_header, read_message, write_header)
from ..solvers import GD, SAGA, init_saga_table
from ..worker import emit_message, message_values, worker_estimate
from ._transport import (FRAME_PREFIX_BYTES, LONG_FRAME_PREFIX_BYTES, FrameStream,
                         no_delay, prefix_bytes, write_prefix)
from .base import Engine

_COMMAND = struct.Struct("<Q")  # the master's command: an epoch's rounds, 0 to stop
COMMAND_FRAME_BYTES = FRAME_PREFIX_BYTES + _COMMAND.size
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


def _command_frame(n_rounds):
    out = np.empty(COMMAND_FRAME_BYTES, dtype=np.uint8)
    _write_command(out, 0, n_rounds)
    return out


def _write_command(out, pos, n_rounds):
    write_prefix(out, pos, _COMMAND.size)
    _COMMAND.pack_into(out, pos + FRAME_PREFIX_BYTES, n_rounds)


def _max_frame_bytes(n_ids, n_values):
    return LONG_FRAME_PREFIX_BYTES + HEADER_BYTES + n_ids * BLOCK_ID_BYTES + \
        n_values * VALUE_BYTES


@njit(cache=True)
def _hosted_rounds(first, last, rnd, u_blocks, u_rows, sender0, solver, loss_id, W,
                   data, indices, indptr, Y, c, alpha, abar, h, shard_starts, l2,
                   fit_intercept, use_control_variates, scale, sends_all, batch,
                   starts, column_block, selected, block_list, rows, seen, estimate,
                   z, dz, values, out):
    """One round of the hosted workers ``first..last-1``, their messages framed.

    The in-process engine's loop over its workers, minus the aggregation;
    ``u_blocks[i]`` and ``u_rows[i]`` are hosted worker i's uniforms of the
    round, ``sender0 + i`` its id.  Writes one frame per message into the
    uint8 array ``out`` (8-aligned) and returns where the frames start and
    end.  They start at byte 0 or 4, whichever puts the first message's values
    8-aligned, and a message is emitted in place where its values are aligned:
    every message when they carry an odd number of ids, every other one when
    even (the others go through ``values``).  Wide models pack one message.
    """
    K = n_outputs(W)
    n_blocks = starts.shape[0] - 1
    n_ids = 0 if sends_all or u_blocks.shape[1] == n_blocks else u_blocks.shape[1]
    begin = 0 if (FRAME_PREFIX_BYTES + HEADER_BYTES + n_ids * BLOCK_ID_BYTES) % \
        VALUE_BYTES == 0 else 4
    pos = begin
    for i in range(first, last):
        s = shard_starts[i]
        e = shard_starts[i + 1]
        n_sel = worker_estimate(
            solver, loss_id, W, data, indices, indptr[s:e + 1], Y[s:e], c[s:e],
            alpha[s:e], abar[i], l2, fit_intercept, sends_all, u_blocks[i],
            u_rows[i], batch, starts, column_block, selected, block_list, rows,
            seen, estimate, z, dz)
        n_val = message_values(block_list, n_sel, starts, K)
        pos += write_prefix(out, pos, message_nbytes(n_sel, n_val, n_blocks))
        pos += write_header(out[pos:], sender0 + i, rnd, block_list,
                            0 if n_sel == n_blocks else n_sel)
        frame_values = out[pos:pos + n_val * VALUE_BYTES]
        if frame_values.ctypes.data % VALUE_BYTES == 0:
            emit_message(estimate, h[i], use_control_variates, block_list, n_sel,
                         starts, scale, frame_values.view(np.float64))
        else:
            emit_message(estimate, h[i], use_control_variates, block_list, n_sel,
                         starts, scale, values)
            copy_into(frame_values, values[:n_val].view(np.uint8))
        for j in range(n_sel):
            selected[block_list[j]] = False
        pos += n_val * VALUE_BYTES
    return begin, pos


@njit(cache=True)
def _aggregate_frames(buf, spans, first, rnd, weights, A, touched, starts,
                      all_blocks, ids, values, counters):
    """A += the weighted messages of workers ``first``, ``first + 1``, ... in
    the frames at ``spans`` of ``buf``, in order, as the in-process engine adds
    them; counts their bytes and blocks.

    Returns the index of the first frame that is not the expected message
    (-1: none), and the payload and framing bytes of the frames read.
    """
    K = n_outputs(A)
    n_blocks = starts.shape[0] - 1
    payload = framing = 0
    for j in range(spans.shape[0]):
        frame = buf[spans[j, 0]:spans[j, 0] + spans[j, 1]]
        if frame.shape[0] < HEADER_BYTES:
            return j, payload, framing
        sender, _, sent_in = read_header(frame)
        if sender != first + j or sent_in != rnd:
            return j, payload, framing
        block_ids, n_sel, message_values = read_message(frame, starts, K, all_blocks,
                                                        ids, values)
        if n_sel < 0:
            return j, payload, framing
        aggregate_message(A, touched, block_ids, n_sel, starts, message_values,
                          weights[first + j])
        count_message(counters, n_sel, message_values.shape[0], n_blocks)
        payload += frame.shape[0]
        framing += prefix_bytes(frame.shape[0])
    return -1, payload, framing


@njit(cache=True)
def _write_broadcast(out, values_at, A, touched, starts, rnd, ids):
    """Frame the round's broadcast, A on the touched blocks, in ``out``.

    A is a view of ``out`` from byte ``values_at`` (8-aligned), so the
    broadcast's values are A itself when every block was sent; otherwise
    the touched blocks are moved down to follow each other, which wrecks A
    (``step_from_broadcast`` takes the step from the message instead).  The
    header goes right before the values, and a command frame fits before it.
    Writes the blocks sent into ``ids``, in increasing order, and clears
    ``touched``; returns where the frame starts and ends, its size without
    the prefix, and the numbers of blocks and values sent.
    """
    K = n_outputs(A)
    a = flat(A)
    n_blocks = touched.shape[0]
    n_sent = n_values = 0
    for b in range(n_blocks):
        if touched[b]:
            touched[b] = False
            ids[n_sent] = b
            n_sent += 1
            lo = starts[b] * K
            size = starts[b + 1] * K - lo
            if lo != n_values:  # to a lower address: a forward copy is safe
                copy_into(a[n_values:], a[lo:lo + size])
            n_values += size
    n_ids = 0 if n_sent == n_blocks else n_sent
    size = message_nbytes(n_sent, n_values, n_blocks)
    begin = values_at - HEADER_BYTES - n_ids * BLOCK_ID_BYTES - prefix_bytes(size)
    pos = begin + write_prefix(out, begin, size)
    write_header(out[pos:], 0, rnd, ids, n_ids)
    return begin, values_at + n_values * VALUE_BYTES, size, n_sent, n_values


@njit(cache=True)
def _apply_broadcast(frame, rnd, W, hbar, starts, all_blocks, ids, values, step,
                     l1, fit_intercept, use_control_variates, cv_fraction):
    """The master's step from its broadcast in ``frame``; False if the frame
    is not round ``rnd``'s broadcast."""
    if frame.shape[0] < HEADER_BYTES or read_header(frame)[2] != rnd:
        return False
    block_ids, n_sel, sent = read_message(frame, starts, n_outputs(W), all_blocks,
                                          ids, values)
    if n_sel < 0:
        return False
    for j in range(1, n_sel):
        if block_ids[j] <= block_ids[j - 1]:
            return False
    step_from_broadcast(W, hbar, block_ids, n_sel, sent, starts, step, l1,
                        fit_intercept, use_control_variates, cv_fraction)
    return True


class _WorkerGroup:
    """The logical workers one task hosts, and its replica of the master.

    The hosted shards are one CSR matrix (``shard_starts`` cuts it) so that one
    compiled call computes and frames the messages of many hosted workers,
    and one more applies the master's broadcast: a round is then a read, two
    compiled calls and a write, whatever the number of hosted workers.
    """

    def __init__(self, spec):
        self.__dict__.update(spec)
        p1, K = self.W.shape
        n_hosted = len(self.worker_ids)
        self.hbar = np.zeros((p1, K))
        self.all_blocks = np.arange(self.n_blocks, dtype=np.int32)
        saga = self.solver == SAGA
        self.alpha = np.zeros((self.Y.shape[0] if saga else 0, K))
        self.abar = np.zeros((n_hosted, p1 if saga else 0, K))
        self.h = np.zeros((n_hosted, p1 if self.use_control_variates else 0, K))
        # The replica and the workers' state as the kernels take them (_layout).
        for name in ("W", "hbar", "alpha", "abar", "h"):
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
        # The arguments of the compiled calls that stay the same all fit long.
        self.pack_args = (
            self.worker_ids[0], self.solver, self.loss_id, self.W, self.data,
            self.indices, self.indptr, self.Y, self.c, self.alpha, self.abar, self.h,
            self.shard_starts, self.l2, self.fit_intercept, self.use_control_variates,
            self.scale, self.sends_all, self.batch_size, self.starts,
            self.column_block, np.zeros(self.n_blocks, dtype=np.bool_),
            np.empty(self.n_blocks, dtype=np.int64),
            np.empty(max(self.batch_size, 1), dtype=np.int64),
            np.zeros(max_rows, dtype=np.bool_), np.zeros_like(self.W), np.empty(K),
            np.empty(K), np.empty(max_message),
            np.empty(4 + self.workers_per_pack * _max_frame_bytes(n_sel_max,
                                                                  max_message),
                     dtype=np.uint8))
        self.out = self.pack_args[-1]
        self.apply_args = (
            self.W, self.hbar, self.starts, self.all_blocks,
            np.empty(self.n_blocks, dtype=np.int32), np.empty(p1 * K), self.step,
            self.l1, self.fit_intercept, self.use_control_variates, self.cv_fraction)

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

    def send_round(self, stream, rnd, u_blocks, u_rows):
        """Compute and send the messages of every hosted worker, a pack at a time."""
        n_hosted = len(self.worker_ids)
        first = 0
        while first < n_hosted:
            last = min(first + self.workers_per_pack, n_hosted)
            begin, end = _hosted_rounds(first, last, rnd, u_blocks, u_rows,
                                        *self.pack_args)
            stream.send(self.out[begin:end])
            first = last

    def apply_broadcast(self, buffer, span, rnd):
        frame = buffer[span[0]:span[0] + span[1]]
        if not _apply_broadcast(frame, rnd, *self.apply_args):
            raise WorkerProcessError(f"expected the master's broadcast of round {rnd}")

    def run(self, stream):
        """Run the epochs the master commands until it says stop.

        On small models the broadcast of an epoch's last round comes after
        the next command (``JoblibEngine._send_command``), in the same read.
        """
        pending = None  # the round of a broadcast that comes with the command
        while True:
            buffer, spans = stream.frames(1 if pending is None else 2)
            if spans[0, 1] != _COMMAND.size:
                raise WorkerProcessError("expected the master's command")
            n_rounds, = _COMMAND.unpack_from(buffer, spans[0, 0])
            if pending is not None:
                self.apply_broadcast(buffer, spans[1], pending)
            if n_rounds == 0:
                return
            u_blocks, u_rows = self.epoch_uniforms(n_rounds)
            for rnd in range(n_rounds):
                if rnd > 0:
                    buffer, spans = stream.frames(1)
                    self.apply_broadcast(buffer, spans[0], rnd - 1)
                self.send_round(stream, rnd, u_blocks[:, rnd], u_rows[:, rnd])
            pending = n_rounds - 1
            if not self.broadcast_with_command:
                buffer, spans = stream.frames(1)
                self.apply_broadcast(buffer, spans[0], pending)
                pending = None


def serve(address, authkey):
    """The body of a worker task: host logical workers until told to stop."""
    from threadpoolctl import threadpool_limits

    try:
        conn = Client(address, authkey=authkey)
    except OSError:
        return  # the fit ended (or failed) before this task could start
    try:
        no_delay(conn)  # both ends: rounds are small writes
        conn.send(os.getpid())
        # Workers share the cores with each other: one BLAS thread each.
        with threadpool_limits(1):
            group = _WorkerGroup(conn.recv())
            group.run(FrameStream(conn))
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
        self._streams = []
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
            no_delay(conn)
            self.pids.append(conn.recv())
            self._conns.append(conn)
        self._W = np.array(coef, dtype=np.float64, order="C")
        p1, K = self._W.shape
        m = pb.partition.n_blocks
        self._hbar = np.zeros((p1, K))
        self._touched = np.zeros(m, dtype=np.bool_)
        self._all_blocks = np.arange(m, dtype=np.int32)
        self._ids = np.empty(m, dtype=np.int32)
        self._values = np.empty(p1 * K)  # a message's values, when misaligned
        # The broadcast frame: room for a command frame and the longest
        # header, then A, 8-aligned, where the broadcast's values go.
        self._values_at = -(-(COMMAND_FRAME_BYTES + _max_frame_bytes(m, 0)) // 8) * 8
        self._out = np.empty(self._values_at + p1 * K * VALUE_BYTES, dtype=np.uint8)
        self._A_flat = self._out[self._values_at:].view(np.float64)
        self._A = self._A_flat.reshape(p1, K)
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
        self._streams = [FrameStream(conn) for conn in self._conns]
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

    def _receive_messages(self, stream, first, n_hosted, rnd):
        """Receive the messages of workers ``first..first+n_hosted-1`` and add
        them to A, in worker order.  A task that fails closes its connection,
        so this read cannot outlive it."""
        buffer, spans = stream.frames(n_hosted)
        bad, payload, framing = _aggregate_frames(
            buffer, spans, first, rnd, self.problem.weights, self._A, self._touched,
            self.problem.partition.starts, self._all_blocks, self._ids, self._values,
            self._counters)
        if bad >= 0:
            offset, size = spans[bad]
            sender, _, sent_in = read_header(buffer[offset:offset + max(size, 16)])
            raise WorkerProcessError(
                f"expected the message of worker {first + bad} in round {rnd}, got "
                f"{size} bytes from worker {sender} for round {sent_in}: the "
                "workers run another version of sklearn-dsparse?")
        self.wire["uplink_payload_bytes"] += payload
        self.wire["uplink_framing_bytes"] += framing

    def _send_command(self, n_rounds):
        """The command to every task, then the last round's broadcast if pending.

        On models of up to ``MAX_DEFERRED_PARAMETERS``, the broadcast of an
        epoch's last round waits for the next command (or the stop) and goes
        in the same write, right after it in ``_out``: a task then wakes once
        per round, as inside an epoch, rather than once for the broadcast and
        once more for the command (a wake-up costs tens of microseconds, as
        much as a small model's round).
        """
        if self._pending_broadcast is None:
            data = _command_frame(n_rounds)
        else:
            begin, end = self._pending_broadcast
            self._pending_broadcast = None
            _write_command(self._out, begin - COMMAND_FRAME_BYTES, n_rounds)
            data = self._out[begin - COMMAND_FRAME_BYTES:end]
        for stream in self._streams:
            stream.send(data)

    def _broadcast(self, rnd, defer):
        """Frame A on the blocks sent (the union) and send it, or keep it for
        the next command.  Returns the numbers of blocks and values sent: the
        broadcast is ``self._ids`` and ``self._A_flat`` up to them."""
        begin, end, size, n_sent, n_values = _write_broadcast(
            self._out, self._values_at, self._A, self._touched,
            self.problem.partition.starts, rnd, self._ids)
        n_streams = len(self._streams)
        self.wire["downlink_payload_bytes"] += n_streams * size
        self.wire["downlink_framing_bytes"] += n_streams * (end - begin - size)
        if defer:
            self._pending_broadcast = begin, end
        else:
            data = self._out[begin:end]
            for stream in self._streams:
                stream.send(data)
        return n_sent, n_values

    def run_epoch(self, n_rounds):
        pb = self.problem
        n, m = pb.n_workers, pb.partition.n_blocks
        self._in_epoch = True
        try:
            self._send_command(n_rounds)
            for rnd in range(n_rounds):
                for stream, first, n_hosted in zip(self._streams, self._first_hosted,
                                                   self._hosted):
                    self._receive_messages(stream, first, n_hosted, rnd)
                nb, nv = self._broadcast(rnd, defer=self._broadcast_with_command
                                         and rnd == n_rounds - 1)
                # The tasks' step, from the same message.
                step_from_broadcast(self._W, self._hbar, self._ids, nb,
                                    self._A_flat[:nv], pb.partition.starts,
                                    pb.step_size, pb.penalty.l1, pb.fit_intercept,
                                    pb.use_control_variates, 1.0 / pb.sparsifier.scale)
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
                self._send_command(0)
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
        self._streams = []
