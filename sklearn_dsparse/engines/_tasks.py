"""Long-lived worker tasks on the active joblib backend, connected back to the
driver: what every multi-process engine shares.

The driver listens on an authenticated ``multiprocessing.connection.Listener``
(a fresh random key per fit) and launches ``n_procs = min(n_jobs,
n_workers)`` tasks through ``joblib.Parallel`` on whatever backend is active
(loky by default; ``parallel_config(backend="dask")`` sends them to a Dask
cluster).  Each task runs ``serve(address, key, host, idle_timeout)``: it connects back,
sends its process id and hands the connection to ``host``, the engine's own
loop, until the driver says stop or goes away.

The master listens on ``master_address`` (the estimators' parameter; when it
is None, ``SKLEARN_DSPARSE_MASTER_ADDRESS``, else 127.0.0.1: set it to an
address of the driver the cluster's workers can reach), and tasks
that have not connected after ``SKLEARN_DSPARSE_CONNECT_TIMEOUT`` seconds
(default 60) make the fit fail: the backend could not run them all at once.
A task gives up connecting after ``CONNECT_SECONDS`` and reports why; once
every task has ended without connecting, the fit fails naming the address.
A task ends when its master has been silent for ``SKLEARN_DSPARSE_TASK_TIMEOUT``
seconds (default 600, read on the driver).

No fit hangs on a silent task: every read and write of the master fails
after the round deadline, the slowest round (or epoch) seen so far plus
``SKLEARN_DSPARSE_ROUND_TIMEOUT`` seconds (default 60), and the fit raises a
``WorkerProcessError`` naming the task, its workers, process and host.  The
tasks of a local backend (loky) that have not ended a few seconds after
their connections closed are killed; both ends keep TCP keepalive, so a task
whose master's host vanished ends too.
"""

import os
import queue
import signal
import socket
import threading
import time
from functools import partial
from multiprocessing import AuthenticationError
from multiprocessing.connection import (Connection, Listener, answer_challenge,
                                        deliver_challenge)

import numpy as np
from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend

from ..exceptions import WorkerProcessError
from ._transport import keep_alive, no_delay, set_timeouts
from .base import Engine


#: Seconds a peer of the listener has to prove it holds the fit's key.
HANDSHAKE_SECONDS = 10.0

#: Seconds a task has to connect to its master and pass the handshake. A
#: master whose packets are dropped (a firewall, a partition) gives no
#: refusal: without a limit the task would wait for the system's ~2 minutes
#: of SYN retries, and the driver would blame the backend at its own
#: connect timeout. 10 s leaves room for three lost SYNs.
CONNECT_SECONDS = 10.0

#: Seconds the tasks get to end once their connections are closed, before
#: those of a local backend are killed.
TASK_GRACE = 2.0

#: What a task says once its workers are set up (their rows, local state).
READY = "ready"

#: The order of an engine's byte counters of the connections (``wire_bytes``).
WIRE_BYTES = ("uplink_payload_bytes", "uplink_framing_bytes",
              "downlink_payload_bytes", "downlink_framing_bytes")


def connect(address, authkey, seconds=CONNECT_SECONDS):
    """``multiprocessing.connection.Client(address, authkey=authkey)``, failing
    with an ``OSError`` when connecting and the handshake take more than
    ``seconds``."""
    sock = socket.create_connection(address, timeout=seconds)
    sock.settimeout(None)  # the Connection needs a blocking socket
    conn = Connection(sock.detach())
    try:
        set_timeouts(conn, seconds)
        answer_challenge(conn, authkey)
        deliver_challenge(conn, authkey)
    except BaseException:
        conn.close()
        raise
    return conn


def serve(address, authkey, host, idle_timeout, task=None):
    """The body of a worker task: connect, then ``host(conn)`` until the end,
    or until the master has been silent for ``idle_timeout`` seconds (it hung,
    or vanished in a way keepalive cannot see).  ``task`` is the task's index
    when tasks are not interchangeable (they hold data).  Returns why the task
    could not connect, if it could not, for the driver's error."""
    from threadpoolctl import threadpool_limits

    try:
        conn = connect(address, authkey)
    except OSError as exc:
        # The fit ended (or failed) before this task could start, or the
        # master cannot be reached from here.
        return f"{socket.gethostname()}: {exc.strerror or exc}"
    try:
        no_delay(conn)  # both ends: rounds are small writes
        keep_alive(conn)
        set_timeouts(conn, idle_timeout)
        conn.send((os.getpid(), socket.gethostname(), task))
        # Workers share the cores with each other: one BLAS thread each.
        with threadpool_limits(1):
            host(conn)
    except (EOFError, OSError):
        return  # the master has gone; it reports why
    finally:
        conn.close()


class TaskEngine(Engine):
    """An engine whose workers run as ``n_jobs`` long-lived tasks of the
    active joblib backend; ``_launch`` starts them, ``_close_tasks`` ends
    them."""

    def __init__(self, n_jobs, master_address=None):
        self.n_jobs = n_jobs
        self.address = master_address or os.environ.get(
            "SKLEARN_DSPARSE_MASTER_ADDRESS", "127.0.0.1")
        self.timeout = float(os.environ.get("SKLEARN_DSPARSE_CONNECT_TIMEOUT", 60))
        self.round_margin = float(os.environ.get("SKLEARN_DSPARSE_ROUND_TIMEOUT", 60))
        self.task_timeout = float(os.environ.get("SKLEARN_DSPARSE_TASK_TIMEOUT", 600))
        self._slowest = 0.0
        self._armed = None
        self._killable = False
        self.hosts = []
        self._conns = []
        self._listener = None
        self._thread = None
        self._task_errors = []
        self._task_results = []
        self._closing = False
        self._accepted = None
        self.pids = []

    def _launch(self, n_workers, task, data=None):
        """Start the tasks, each running ``task(address, key, idle_timeout)``,
        and wait for their connections; return the worker ids each task hosts
        (consecutive ranges, in the order of ``self._conns``).  With ``data``
        (``_dask_data.RemoteData``) each task gets, as a 4th argument, its
        index and its workers' pieces (``data.parts_of``); data on a Dask
        cluster runs the tasks itself, where its partitions lie, as it lays
        them out."""
        if data is None or not data.places_tasks:
            backend, _ = get_active_backend()
            # Processes of this machine that the backend made for its tasks
            # (not a cluster's workers, nor this process's threads) may be killed.
            self._killable = type(backend).__name__ in ("LokyBackend",
                                                        "MultiprocessingBackend")
            n_procs = min(n_workers, self._effective_n_jobs(backend))
            groups = np.array_split(np.arange(n_workers), n_procs)
            launch = partial(self._run_on_backend, backend, groups, task, data)
        else:
            groups = data.groups
            n_procs = len(groups)
            launch = partial(data.run_tasks, task, idle_timeout=self.task_timeout)
        self._groups = groups
        key = os.urandom(32)
        try:
            # Authenticated by ``_handshake``, one thread per peer, so that a
            # silent or slow peer holds up no one else.
            self._listener = Listener((self.address, 0), backlog=max(n_procs, 64))
        except OSError as exc:
            raise ValueError(
                f"The driver cannot listen on master_address={self.address!r} "
                f"({exc.strerror or exc}): give an address of one of this "
                "machine's network interfaces that the workers can reach (or "
                "None for SKLEARN_DSPARSE_MASTER_ADDRESS, else 127.0.0.1).") from exc
        self.master_address = self._listener.address
        accepted = self._accepted = queue.Queue()
        threading.Thread(target=self._accept, args=(accepted, key),
                         daemon=True).start()
        self._thread = threading.Thread(
            target=self._run_tasks, args=(launch, self.master_address, key), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        indices = []
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
                if not self._thread.is_alive() and accepted.empty():
                    self._raise_task_error()
                    why = sorted({r for r in self._task_results if r})
                    raise WorkerProcessError(
                        f"{n_procs - len(self._conns)} of the {n_procs} worker tasks "
                        "ended without connecting to the master at "
                        f"{self.master_address[0]}:{self.master_address[1]}"
                        f"{' (' + '; '.join(why) + ')' if why else ''}: set "
                        "master_address to an address of this machine that the "
                        "workers can reach.")
                continue
            no_delay(conn)
            keep_alive(conn)
            pid, host, task_index = conn.recv()
            self.pids.append(pid)
            self.hosts.append(host)
            self._conns.append(conn)
            indices.append(task_index)
        if data is not None:  # the i-th connection hosts groups[i]
            order = np.argsort(indices)
            self._conns = [self._conns[i] for i in order]
            self.pids = [self.pids[i] for i in order]
            self.hosts = [self.hosts[i] for i in order]
        self._arm_deadline()
        return groups

    def _await_ready(self):
        """Wait until every task has set up its workers: building their rows
        and state (a pass or more over the shards) may take far longer than a
        round, so it has the tasks' own deadline, ``task_timeout``."""
        started = time.perf_counter()
        for task, conn in enumerate(self._conns):
            set_timeouts(conn, self.task_timeout)
            try:
                if conn.recv() != READY:
                    raise WorkerProcessError(
                        f"worker task {task} answered its set-up with something "
                        "else than ready: the workers run another version of "
                        "sklearn-dsparse?")
            except BlockingIOError:
                raise WorkerProcessError(
                    f"worker task {task} (process {self.pids[task]} on host "
                    f"{self.hosts[task]!r}) did not set up its workers within "
                    f"SKLEARN_DSPARSE_TASK_TIMEOUT = {self.task_timeout:g} s.") from None
            except (EOFError, OSError) as exc:
                self._raise_task_error()
                raise WorkerProcessError(
                    f"lost the connection to worker task {task} while it set up its "
                    f"workers ({exc!r}): it was killed or crashed.") from exc
        self._armed = None
        self._arm_deadline()
        return time.perf_counter() - started

    def _arm_deadline(self):
        """Reads and writes of the master that block longer than the slowest
        round so far plus ``round_margin`` fail (re-armed as it grows)."""
        deadline = self._slowest + self.round_margin
        if self._armed is None or deadline > 1.1 * self._armed:
            for conn in self._conns:
                set_timeouts(conn, deadline)
            self._armed = deadline

    def _record_round(self, seconds):
        self._slowest = max(self._slowest, seconds)
        self._arm_deadline()

    def _deadline_error(self, task, waited, unit="round"):
        """The error of a fit whose task ``task`` stayed silent past the deadline."""
        workers = self._groups[task]
        return WorkerProcessError(
            f"worker task {task} (workers {workers[0]} to {workers[-1]}, process "
            f"{self.pids[task]} on host {self.hosts[task]!r}) was silent for "
            f"{waited:.1f} s, past the round deadline of {self._armed:.1f} s (the "
            f"slowest {unit} so far, {self._slowest:.3g} s, plus "
            f"SKLEARN_DSPARSE_ROUND_TIMEOUT = {self.round_margin:g} s): it is "
            "frozen, or its host cannot be reached. The fit is abandoned; "
            "set SKLEARN_DSPARSE_ROUND_TIMEOUT higher if its rounds can be that "
            "slow.")

    def _effective_n_jobs(self, backend):
        n_jobs = self.n_jobs
        try:
            return max(1, backend.effective_n_jobs(n_jobs))
        except Exception as exc:  # a backend without a notion of slots: trust n_jobs
            if n_jobs is not None and n_jobs < 0:
                # One task would run, in this process: a fit that looks
                # distributed and is not (Ray's backend before ray.init()).
                raise ValueError(
                    f"n_jobs={n_jobs} asks the active joblib backend "
                    f"({type(backend).__name__}) for its number of workers, and it "
                    f"cannot tell ({exc}). Start its cluster first (for Ray, "
                    "ray.init()), or give n_jobs a positive number.") from exc
            return max(1, n_jobs if n_jobs and n_jobs > 0 else 1)

    def _accept(self, accepted, key):
        # Until close(), which wakes this thread up by connecting.
        while not self._closing:
            try:
                conn = self._listener.accept()
            except (OSError, AttributeError):
                continue
            if self._closing:
                conn.close()
                break
            threading.Thread(target=self._handshake, args=(conn, key, accepted),
                             daemon=True).start()

    def _handshake(self, conn, key, accepted):
        """Queue ``conn`` if its peer proves it holds the fit's key within
        ``HANDSHAKE_SECONDS``; refuse it otherwise (wrong key, garbage,
        silence)."""
        try:
            set_timeouts(conn, HANDSHAKE_SECONDS)
            deliver_challenge(conn, key)
            answer_challenge(conn, key)
            set_timeouts(conn, 0.0)  # no deadline until the rounds arm one
        except (AuthenticationError, EOFError, OSError, ValueError):
            conn.close()
            return
        if self._closing:
            conn.close()
        else:
            accepted.put(conn)

    def _run_tasks(self, launch, address, key):
        """``launch(address, key)``: run the tasks until they all end."""
        try:
            self._task_results = launch(address, key)
        except BaseException as exc:  # reported by the master's next wait
            self._task_errors.append(exc)

    def _run_on_backend(self, backend, groups, task, data, address, key):
        local = [() if data is None else ((t, data.parts_of(group)),)
                 for t, group in enumerate(groups)]
        with parallel_config(backend=backend):
            return Parallel(n_jobs=len(groups))(
                delayed(task)(address, key, self.task_timeout, *args) for args in local)

    def _raise_task_error(self):
        if self._task_errors:
            exc = self._task_errors[0]
            hint = ""
            if len(self._conns) < len(self._groups):
                # Before it connects, a task fails where the backend runs it:
                # most often the workers' Python lacks this package, or has
                # another version (and some backends, joblibspark's, hide the
                # worker's exception behind one of their own).
                hint = (" before connecting to the master. Are sklearn-dsparse "
                        "and its dependencies installed in the Python environment "
                        "of the backend's workers, in the driver's versions? The "
                        "workers' logs have their error.")
            raise WorkerProcessError(f"a worker task failed: {exc!r}{hint}") from exc

    def _close_tasks(self):
        """Close the connections (a task waiting on one ends) and the listener."""
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
            self._thread.join(timeout=TASK_GRACE)
            if self._thread.is_alive() and self._killable:
                # A task that does not end (frozen: its process stopped) would
                # hold a worker of the backend for ever.
                here = socket.gethostname()
                for pid, host in zip(self.pids, self.hosts):
                    if host == here and pid != os.getpid():
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
                self._thread.join(timeout=TASK_GRACE)
        self._conns = []
