"""Workers as long-lived tasks on the active joblib backend (loky, Dask, ...),
running the one-step-per-round solvers (``gd``, ``sgd``, ``saga``).

The tasks are launched and connected as ``_tasks`` describes.  Each receives
the shards and state of the logical workers it hosts, and then, every round,
runs the two halves of ``worker.worker_round`` for each of them, sends their
messages, receives the master's broadcast (the aggregated message on the
union of the blocks sent) and applies ``master.step_from_broadcast`` to its
own replica of W and hbar.  The master applies the same step to the same
broadcast, so every node holds the same W, bit for bit, and the iterates are
those of the in-process engine (whose ``master.master_step`` does the same
arithmetic).

Each message travels as one frame of the connection holding exactly the
bytes ``messages.message_nbytes`` counts, in the layout of ``messages``; the
connection adds a 4-byte length (reported as framing).  On small models,
wake-ups, system calls and the interpreter, not bytes, are what a round
costs, so the rounds run in compiled code on both sides, reads and writes
included (``_transport``): a task's ``_serve_epochs`` and the master's
``_master_rounds`` return to Python only between epochs (a task, only when it
needs new uniforms), and the master sends a task the next epoch's command and
the last broadcast in one write, so that each process wakes once per round.
On wide models a round is memory-bound, so nothing is copied that need not
be: a worker emits its message straight into its frame, the master
aggregates from its read buffer into A, which lies in its broadcast frame,
and every node steps from the broadcast message itself.
"""

import os
import time

import numpy as np
from numba import njit

from .._layout import flat, kernel_view, n_outputs
from ..accounting import count_message, count_round, new_counters
from ..exceptions import WorkerProcessError
from ..master import aggregate_message, step_from_broadcast
from ..messages import (BLOCK_ID_BYTES, HEADER_BYTES, VALUE_BYTES, _get_uint,
                        _put_uint, copy_into, message_nbytes, read_header,
                        read_message, write_header)
from ..solvers import GD, SAGA, init_saga_table
from ..sparsifiers import SAMPLE
from ..worker import emit_message, message_values, worker_estimate
from . import _tasks
from ._tasks import READY, WIRE_BYTES, TaskEngine
from ._transport import (EINTR, FRAME_PREFIX_BYTES, LONG_FRAME_PREFIX_BYTES, OK,
                         TIMED_OUT, check, describe, next_frame, prefix_bytes,
                         write_all, write_prefix)

# The master's command: the number of rounds of the next epoch (uint64), 0 to stop.
COMMAND_BYTES = 8
COMMAND_FRAME_BYTES = FRAME_PREFIX_BYTES + COMMAND_BYTES
# A read buffer holds the largest frame expected and this much more, read ahead.
# A frame cut by the buffer's end is moved to its start: with 1 MiB ahead that
# copy is rare (measured at 10^6 parameters, 64 workers: 64 KiB made the round
# 10% slower; 8 MiB gained nothing more).
READ_AHEAD_BYTES = 1 << 20
# What the compiled round loops return besides the transport's statuses.
_STOPPED = -10
_NEED_UNIFORMS = -11
_PROTOCOL_ERROR = -12
# A task computes, then sends, the messages of as many of its workers at once
# as fit in max(n_columns * n_outputs, this) values (_WorkerGroup).
MIN_PACKED_VALUES = 1 << 17
# gd draws up to this many uniforms ahead (_WorkerGroup.epoch_uniforms).
DRAW_AHEAD_VALUES = 1 << 16
# Models of at most this many parameters send an epoch's last broadcast with
# the next command (JoblibEngine._run).  Measured on 2 cores: at 1e5
# parameters, waking the tasks once per round is worth more; at 1e6, moving
# and applying the broadcast (milliseconds) while the master steps is.
MAX_DEFERRED_PARAMETERS = 1 << 18


@njit(cache=True)
def _write_command(out, pos, n_rounds):
    pos += write_prefix(out, pos, COMMAND_BYTES)
    _put_uint(out, pos, n_rounds, COMMAND_BYTES)


def _max_frame_bytes(n_ids, n_values):
    return LONG_FRAME_PREFIX_BYTES + HEADER_BYTES + n_ids * BLOCK_ID_BYTES + \
        n_values * VALUE_BYTES


def _read_buffer(n_buffers, max_frame_bytes):
    """Read buffers of ``next_frame``, 8-aligned, one row per connection."""
    size = -(-(4 + max_frame_bytes + READ_AHEAD_BYTES) // 8) * 8
    return np.empty((n_buffers, size), dtype=np.uint8)


@njit(cache=True)
def _hosted_rounds(first, last, rnd, u_blocks, u_rows, sender0, solver, loss_id, W,
                   data, indices, indptr, Y, c, alpha, abar, h, shard_starts, l2,
                   fit_intercept, use_control_variates, scale, selection, batch,
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
    # Sampled blocks carry their ids; a message of every block (or an empty
    # one) carries none.
    n_ids = u_blocks.shape[1] if selection == SAMPLE and \
        u_blocks.shape[1] < n_blocks else 0
    begin = 0 if (FRAME_PREFIX_BYTES + HEADER_BYTES + n_ids * BLOCK_ID_BYTES) % \
        VALUE_BYTES == 0 else 4
    pos = begin
    for i in range(first, last):
        s = shard_starts[i]
        e = shard_starts[i + 1]
        n_sel = worker_estimate(
            solver, loss_id, W, data, indices, indptr[s:e + 1], Y[s:e], c[s:e],
            alpha[s:e], abar[i], l2, fit_intercept, selection, scale, u_blocks[i],
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
def _aggregate_frame(frame, worker, rnd, weights, A, touched, starts, all_blocks,
                     ids, values, counters):
    """A += the weighted message of ``worker`` in ``frame``, as the in-process
    engine adds it, and count it; False if the frame is not that message."""
    if frame.shape[0] < HEADER_BYTES:
        return False
    sender, _, sent_in = read_header(frame)
    if sender != worker or sent_in != rnd:
        return False
    block_ids, n_sel, message_values = read_message(frame, starts, n_outputs(A),
                                                    all_blocks, ids, values)
    if n_sel < 0:
        return False
    aggregate_message(A, touched, block_ids, n_sel, starts, message_values,
                      weights[worker])
    count_message(counters, n_sel, message_values.shape[0], starts.shape[0] - 1)
    return True


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
                     l1, fit_intercept, use_control_variates, cv_fraction,
                     acceleration=None):
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
                        fit_intercept, use_control_variates, cv_fraction,
                        acceleration)
    return True


@njit(cache=True)
def _receive_broadcast(fd, buf, bounds, rnd, apply):
    status, offset, size = next_frame(fd, buf, bounds, True)
    if status != OK:
        return status
    if not _apply_broadcast(buf[offset:offset + size], rnd, *apply):
        return _PROTOCOL_ERROR
    return OK


@njit(cache=True, nogil=True)
def _serve_epochs(fd, buf, bounds, state, u_blocks, u_rows, broadcast_with_command,
                  workers_per_pack, pack, apply):
    """A task's rounds, epoch after epoch, until the master says stop.

    ``state`` is [the rounds commanded (-1: read the next command), the round
    of the broadcast still to come (-1: none), the next round's index in
    ``u_blocks`` and ``u_rows``].  Every round: step from the last broadcast,
    compute the hosted workers' messages a pack at a time (``pack``: the
    arguments of ``_hosted_rounds`` after the uniforms) and write them.  On
    models of up to ``MAX_DEFERRED_PARAMETERS`` the broadcast of an epoch's
    last round comes right after the next command
    (``JoblibEngine._run``).  Returns ``_STOPPED``, ``_NEED_UNIFORMS``
    (the command is read: draw the epoch's uniforms and call again),
    ``_PROTOCOL_ERROR`` or a failed read's or write's status.
    """
    n_hosted = u_blocks.shape[0]
    out = pack[-1]
    while True:
        if state[0] < 0:
            status, offset, size = next_frame(fd, buf, bounds, True)
            if status != OK:
                return status
            if size != COMMAND_BYTES:
                return _PROTOCOL_ERROR
            n_rounds = _get_uint(buf, offset, COMMAND_BYTES)
            if state[1] >= 0:
                status = _receive_broadcast(fd, buf, bounds, state[1], apply)
                if status != OK:
                    return status
                state[1] = -1
            if n_rounds == 0:
                return _STOPPED
            state[0] = n_rounds
        n_rounds = state[0]
        at = state[2]
        if u_blocks.shape[1] - at < n_rounds:
            return _NEED_UNIFORMS
        for rnd in range(n_rounds):
            if rnd > 0:
                status = _receive_broadcast(fd, buf, bounds, rnd - 1, apply)
                if status != OK:
                    return status
            for first in range(0, n_hosted, workers_per_pack):
                last = min(first + workers_per_pack, n_hosted)
                begin, end = _hosted_rounds(first, last, rnd, u_blocks[:, at + rnd],
                                            u_rows[:, at + rnd], *pack)
                status = write_all(fd, out[begin:end])
                if status != OK:
                    return status
        state[0] = -1
        state[1] = n_rounds - 1
        state[2] = at + n_rounds
        if not broadcast_with_command:
            status = _receive_broadcast(fd, buf, bounds, n_rounds - 1, apply)
            if status != OK:
                return status
            state[1] = -1


# The master's progress through an epoch (so that a signal can interrupt it),
# and where a frame that is not the expected message lies.
_PROGRESS = (_ROUND, _STREAM, _FRAME, _PENDING_BEGIN, _PENDING_END, _COMMANDED,
             _BAD_OFFSET, _BAD_SIZE) = range(8)


@njit(cache=True, nogil=True)
def _master_rounds(progress, n_rounds, defer_last, fds, bufs, bounds, first_hosted,
                   n_hosted, weights, A, A_flat, touched, starts, all_blocks, ids,
                   values, out, values_at, command, W, hbar, step, l1, fit_intercept,
                   use_control_variates, cv_fraction, acceleration, counters,
                   wire):
    """The master's epoch: the command (with the last epoch's pending
    broadcast) to every task, then ``n_rounds`` rounds.

    A round receives the messages from the tasks in worker order, adding each
    to A as it arrives (so a read buffer needs room for one message, not for
    a task's burst), frames and sends the broadcast (or keeps it for the next
    command, after the last round when ``defer_last``), and takes the step
    from it.
    ``progress`` says where the epoch is: a signal makes a read return
    ``EINTR`` and the next call goes on from there.  Returns OK, a failed
    read's or write's status, or ``_PROTOCOL_ERROR`` (``progress`` then points
    at the stream and the frame).  ``wire`` counts the bytes on the
    connections: payload and framing, up and down.
    """
    n_streams = fds.shape[0]
    n_blocks = starts.shape[0] - 1
    if progress[_COMMANDED] == 0:
        begin = progress[_PENDING_BEGIN]
        if begin >= 0:
            begin -= COMMAND_FRAME_BYTES
            _write_command(out, begin, n_rounds)
            data = out[begin:progress[_PENDING_END]]
        else:
            _write_command(command, 0, n_rounds)
            data = command
        for j in range(n_streams):
            status = write_all(fds[j], data)
            if status != OK:
                return status
        progress[_PENDING_BEGIN] = -1
        progress[_COMMANDED] = 1
    for rnd in range(progress[_ROUND], n_rounds):
        for j in range(progress[_STREAM], n_streams):
            while progress[_FRAME] < n_hosted[j]:
                status, offset, size = next_frame(fds[j], bufs[j], bounds[j], False)
                if status != OK:
                    return status
                if not _aggregate_frame(bufs[j][offset:offset + size],
                                        first_hosted[j] + progress[_FRAME], rnd,
                                        weights, A, touched, starts, all_blocks, ids,
                                        values, counters):
                    progress[_BAD_OFFSET] = offset
                    progress[_BAD_SIZE] = size
                    return _PROTOCOL_ERROR
                wire[0] += size
                wire[1] += prefix_bytes(size)
                progress[_FRAME] += 1
            progress[_STREAM] = j + 1
            progress[_FRAME] = 0
        begin, end, size, n_sent, n_values = _write_broadcast(
            out, values_at, A, touched, starts, rnd, ids)
        wire[2] += n_streams * size
        wire[3] += n_streams * (end - begin - size)
        if defer_last and rnd == n_rounds - 1:
            progress[_PENDING_BEGIN] = begin
            progress[_PENDING_END] = end
        else:
            for j in range(n_streams):
                status = write_all(fds[j], out[begin:end])
                if status != OK:
                    return status
        # The tasks' step, from the same message.
        step_from_broadcast(W, hbar, ids, n_sent, A_flat[:n_values], starts, step, l1,
                            fit_intercept, use_control_variates, cv_fraction,
                            acceleration)
        count_round(counters, weights.shape[0], n_sent, n_values, n_blocks, W.size)
        progress[_ROUND] = rnd + 1
        progress[_STREAM] = 0
    return OK


class _WorkerGroup:
    """The logical workers one task hosts, and its replica of the master.

    The hosted shards are one CSR matrix (``shard_starts`` cuts it) so that one
    compiled call computes and frames the messages of many hosted workers: a
    round is then a read, a step, that call and a write, whatever the number
    of hosted workers.
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
        # Messages are packed a group of hosted workers at a time: as many as
        # fit in a buffer no smaller than the model (the scratch a worker needs
        # anyway), so that small models pack every hosted worker at once.
        n_sel_max = self.sparsifier.max_blocks_sent
        max_message = n_sel_max * int(np.max(np.diff(self.starts))) * K
        packed = max(p1 * K, MIN_PACKED_VALUES)
        self.workers_per_pack = max(1, min(n_hosted, packed // max_message))
        max_rows = int(np.max(np.diff(self.shard_starts)))
        # The arguments of the compiled calls that stay the same all fit long.
        self.pack_args = (
            self.worker_ids[0], self.solver, self.loss_id, self.W, self.data,
            self.indices, self.indptr, self.Y, self.c, self.alpha, self.abar, self.h,
            self.shard_starts, self.l2, self.fit_intercept, self.use_control_variates,
            self.scale, self.sparsifier.selection, self.batch_size, self.starts,
            self.column_block, np.zeros(self.n_blocks, dtype=np.bool_),
            np.empty(self.n_blocks, dtype=np.int64),
            np.empty(max(self.batch_size, 1), dtype=np.int64),
            np.zeros(max_rows, dtype=np.bool_), np.zeros_like(self.W), np.empty(K),
            np.empty(K), np.empty(max_message),
            np.empty(4 + self.workers_per_pack * _max_frame_bytes(n_sel_max,
                                                                  max_message),
                     dtype=np.uint8))
        self.max_broadcast_bytes = _max_frame_bytes(self.n_blocks, p1 * K)
        self.apply_args = (
            self.W, self.hbar, self.starts, self.all_blocks,
            np.empty(self.n_blocks, dtype=np.int32), np.empty(p1 * K), self.step,
            self.l1, self.fit_intercept, self.use_control_variates, self.cv_fraction,
            self.acceleration)

    def epoch_uniforms(self, u_blocks, n_rounds):
        """The uniforms of the next ``n_rounds`` rounds, as the in-process
        engine draws them: each epoch its block uniforms, then its row
        uniforms; ``u_blocks`` are the block uniforms drawn and not used yet.

        Only gd leaves some: it draws no row uniforms, so the block uniforms
        of consecutive epochs follow each other in every stream and one draw
        serves many epochs (a draw costs about a microsecond per stream, as
        much as a small model's whole round).  The other solvers use an
        epoch's uniforms within it.
        """
        n_hosted = len(self.worker_ids)
        if self.solver != GD:
            u_blocks = self.sparsifier.draw(self.rngs, self.shared_rng, n_rounds)
            u_rows = np.stack([rng.random((n_rounds, self.batch_size))
                               for rng in self.rngs])
            return u_blocks, u_rows
        per_round = max(1, n_hosted * self.sparsifier.uniforms_per_round)
        n_more = max(n_rounds, DRAW_AHEAD_VALUES // per_round)
        u_blocks = np.concatenate(
            [u_blocks, self.sparsifier.draw(self.rngs, self.shared_rng, n_more)], axis=1)
        return u_blocks, np.empty((n_hosted, u_blocks.shape[1], 0))

    def run(self, fd):
        """Run the epochs the master commands on the connection ``fd`` until
        it says stop (``_serve_epochs``)."""
        n_hosted = len(self.worker_ids)
        buf = _read_buffer(1, COMMAND_FRAME_BYTES + self.max_broadcast_bytes)[0]
        bounds = np.zeros(2, dtype=np.int64)
        state = np.array([-1, -1, 0], dtype=np.int64)
        u_blocks = self.sparsifier.draw(self.rngs, self.shared_rng, 0)
        u_rows = np.empty((n_hosted, 0, 0 if self.solver == GD else self.batch_size))
        while True:
            status = _serve_epochs(fd, buf, bounds, state, u_blocks, u_rows,
                                   self.broadcast_with_command, self.workers_per_pack,
                                   self.pack_args, self.apply_args)
            if status == _STOPPED:
                return
            if status == _NEED_UNIFORMS:
                u_blocks, u_rows = self.epoch_uniforms(u_blocks[:, state[2]:],
                                                       int(state[0]))
                state[2] = 0
            elif status == _PROTOCOL_ERROR:
                raise WorkerProcessError("expected the master's command or broadcast")
            else:
                check(status)


def _host_epochs(conn):
    group = _WorkerGroup(conn.recv())
    conn.send(READY)
    group.run(conn.fileno())


def serve(address, authkey, idle_timeout):
    """The body of a worker task: host logical workers until told to stop."""
    return _tasks.serve(address, authkey, _host_epochs, idle_timeout)


class JoblibEngine(TaskEngine):
    """Run the workers as ``n_jobs`` long-lived tasks of the active joblib backend."""

    def __init__(self, n_jobs, master_address=None):
        if os.name != "posix":
            raise NotImplementedError(
                f"n_jobs={n_jobs} runs the workers in other processes, which talk "
                "to the driver with the C library's read and write on sockets: "
                "that needs a POSIX system (Linux, macOS). Use n_jobs=None here.")
        super().__init__(n_jobs, master_address)
        self._round_args = None  # set once every task has its workers
        self._in_epoch = False

    def start(self, problem, coef, seed_sequences):
        pb = self.problem = problem
        n = pb.n_workers
        # ``serve`` is looked up here, not bound at import: a benchmark swaps it.
        groups = self._launch(n, serve)
        n_procs = len(groups)
        self._hosted = np.array([len(g) for g in groups], dtype=np.int64)
        self._first_hosted = np.array([g[0] for g in groups], dtype=np.int64)
        self._W = np.array(coef, dtype=np.float64, order="C")
        p1, K = self._W.shape
        self._hbar = np.zeros((p1, K))
        m = pb.partition.n_blocks
        sparsifier = pb.sparsifier
        broadcast_with_command = p1 * K <= MAX_DEFERRED_PARAMETERS
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
                use_control_variates=pb.use_control_variates, scale=sparsifier.scale,
                sparsifier=sparsifier,
                batch_size=pb.batch_size, starts=pb.partition.starts,
                column_block=pb.partition.column_block, n_blocks=m,
                step=pb.step_size, cv_fraction=1.0 / sparsifier.scale,
                acceleration=pb.acceleration,
                broadcast_with_command=broadcast_with_command))
        # A read buffer per task, for its largest message.
        n_sel_max = sparsifier.max_blocks_sent
        max_block = int(np.max(np.diff(pb.partition.starts)))
        self._bufs = _read_buffer(n_procs, _max_frame_bytes(
            n_sel_max, n_sel_max * max_block * K))
        # The broadcast frame: room for a command frame and the longest
        # header, then A, 8-aligned, where the broadcast's values go.
        values_at = -(-(COMMAND_FRAME_BYTES + _max_frame_bytes(m, 0)) // 8) * 8
        out = np.empty(values_at + p1 * K * VALUE_BYTES, dtype=np.uint8)
        A_flat = out[values_at:].view(np.float64)
        self._progress = np.zeros(len(_PROGRESS), dtype=np.int64)
        self._progress[_PENDING_BEGIN] = -1
        self._counters = new_counters()
        self._wire = np.zeros(len(WIRE_BYTES), dtype=np.int64)
        # The arguments of _master_rounds that stay the same all fit long.
        self._await_ready()
        self._round_args = (
            broadcast_with_command,
            np.array([conn.fileno() for conn in self._conns], dtype=np.int64),
            self._bufs, np.zeros((n_procs, 2), dtype=np.int64), self._first_hosted,
            self._hosted, pb.weights, A_flat.reshape(p1, K), A_flat,
            np.zeros(m, dtype=np.bool_), pb.partition.starts,
            np.arange(m, dtype=np.int32), np.empty(m, dtype=np.int32),
            np.empty(p1 * K),  # a message's values, when misaligned
            out, values_at, np.empty(COMMAND_FRAME_BYTES, dtype=np.uint8), self._W,
            self._hbar, pb.step_size, pb.penalty.l1, pb.fit_intercept,
            pb.use_control_variates, 1.0 / sparsifier.scale,
            # The master's own copy: the convex schedule counts its rounds in it.
            None if pb.acceleration is None else pb.acceleration.copy(),
            self._counters, self._wire)
        return self

    def run_epoch(self, n_rounds):
        self._in_epoch = True
        self._run(n_rounds)
        self._in_epoch = False

    def _run(self, n_rounds):
        """``_master_rounds`` until the epoch is done; ``n_rounds = 0`` tells
        the tasks to stop.  On models of up to ``MAX_DEFERRED_PARAMETERS``,
        the broadcast of an epoch's last round waits for the next command (or
        the stop) and goes in the same write, right after it in ``_out``: a
        task then wakes once per round, as inside an epoch, rather than once
        for the broadcast and once more for the command (a wake-up costs tens
        of microseconds, as much as a small model's round).
        """
        progress = self._progress
        progress[:_PENDING_BEGIN] = 0  # round, stream, frame
        progress[_COMMANDED] = 0
        started = time.perf_counter()
        while True:
            status = _master_rounds(progress, n_rounds, *self._round_args)
            if status == OK:
                self._record_round(time.perf_counter() - started)
                return
            if status == EINTR:
                continue  # Python runs the signal's handler (KeyboardInterrupt) first
            self._raise_task_error()
            if status in TIMED_OUT:
                raise self._deadline_error(int(progress[_STREAM]),
                                           time.perf_counter() - started, "epoch")
            if status == _PROTOCOL_ERROR:
                self._raise_protocol_error()
            raise WorkerProcessError(
                f"lost the connection to a worker process ({describe(status)}): it "
                "was killed or crashed. The fit is abandoned.")

    def _raise_protocol_error(self):
        progress = self._progress
        j = progress[_STREAM]
        worker = self._first_hosted[j] + progress[_FRAME]
        offset, size = progress[_BAD_OFFSET], progress[_BAD_SIZE]
        frame = self._bufs[j, offset:offset + max(size, HEADER_BYTES)]
        sender, _, sent_in = read_header(frame)
        raise WorkerProcessError(
            f"expected the message of worker {worker} in round {progress[_ROUND]}, "
            f"got {size} bytes from worker {sender} for round {sent_in}: the "
            "workers run another version of sklearn-dsparse?")

    @property
    def wire_bytes(self):
        """Bytes measured on the connections: payload and framing, each way."""
        return {name: int(v) for name, v in zip(WIRE_BYTES, self._wire)}

    def close(self):
        # Between epochs the tasks wait for a command; mid-epoch (an error, an
        # interrupt) they wait for a broadcast, and a closed connection ends them.
        if not self._in_epoch and self._round_args is not None:
            try:
                self._run(0)
            except WorkerProcessError:
                pass
        self._close_tasks()
        self._round_args = None
