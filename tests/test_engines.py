"""Where the workers run changes nothing: in-process, loky processes, Dask.

Also the joblib engine's wire accounting and its behaviour under faults.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV

from sklearn_dsparse import (DistributedSparseElasticNet,
                             DistributedSparseLogisticRegression, DistributedSparseRidge)
from sklearn_dsparse.engines import JoblibEngine, WorkerProcessError
from sklearn_dsparse.engines._tasks import TASK_GRACE

from conftest import load

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


def data(kind, layout):
    X, y = load("a1a") if kind == "classifier" else load("abalone_scale")
    X, y = X[:600], y[:600]
    return (X if layout == "sparse" else X.toarray()), y


def fit(kind, X, y, **params):
    est = (DistributedSparseLogisticRegression(C=0.5) if kind == "classifier"
           else DistributedSparseRidge(alpha=1.0))
    return est.set_params(**{"solver": "saga", "max_iter": 2, "tol": 0, "random_state": 0,
                             **params}).fit(X, y)


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def wait_until_gone(pids, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


#: The paper's solvers and the models they fit (asgd: on the classifier, the
#: convex schedule, whose round count every node keeps).
SOLVER_KINDS = [(solver, kind) for solver in ("saga", "sgd", "gd", "asgd")
                for kind in ("classifier", "regressor")]


@pytest.mark.parametrize("n_workers", [2, 7, 32])
@pytest.mark.parametrize("layout", ["sparse", "dense"])
@pytest.mark.parametrize("solver, kind", SOLVER_KINDS)
def test_loky_processes_give_the_in_process_model_bitwise(solver, kind, layout,
                                                          n_workers):
    X, y = data(kind, layout)
    local = fit(kind, X, y, solver=solver, n_workers=n_workers)
    remote = fit(kind, X, y, solver=solver, n_workers=n_workers, n_jobs=2)
    assert_array_equal(remote.coef_, local.coef_)
    assert_array_equal(remote.intercept_, local.intercept_)
    assert np.any(local.coef_ != 0)
    for key in ("rounds", "uplink_bytes", "downlink_bytes", "blocks_sent"):
        assert remote.communication_[key] == local.communication_[key]


@pytest.mark.parametrize("solver", ["gd", "saga"])
@pytest.mark.parametrize("sparsifier", ["shared", "none", "bernoulli"])
def test_loky_draws_as_the_in_process_engine_for_every_sparsifier(solver, sparsifier):
    # gd tasks draw the uniforms of many epochs at once, from the same streams.
    X, y = data("classifier", "sparse")
    params = dict(solver=solver, sparsifier=sparsifier, n_workers=7, n_blocks=8,
                  max_iter=4)
    local = fit("classifier", X, y, **params)
    remote = fit("classifier", X, y, n_jobs=2, **params)
    assert_array_equal(remote.coef_, local.coef_)
    assert_array_equal(remote.intercept_, local.intercept_)
    for key in ("rounds", "uplink_bytes", "downlink_bytes", "blocks_sent"):
        assert remote.communication_[key] == local.communication_[key]
    assert remote.communication_["wire_uplink_payload_bytes"] == \
        local.communication_["uplink_bytes"]
    if sparsifier == "bernoulli":
        # Some workers sent nothing (their header), and some rounds nobody
        # did (a broadcast of no blocks): both travel and are counted.
        comm, full = local.communication_, 16 + 8 * (X.shape[1] + 1)
        sent, messages = comm["blocks_sent"] // 8, comm["rounds"] * 7
        assert 0 < sent < messages
        assert comm["uplink_bytes"] == sent * full + (messages - sent) * 16
        n_empty, rest = divmod(messages * full - comm["downlink_bytes"],
                               7 * (full - 16))
        assert rest == 0 and 0 < n_empty < comm["rounds"]


@pytest.mark.parametrize("control_variates", [True, False])
def test_loky_takes_the_proximal_step_as_the_in_process_engine(control_variates):
    # The L1 prox moves every block, sent or not, on every node.
    X, y = data("regressor", "sparse")
    params = dict(alpha=0.5, l1_ratio=0.7, solver="saga", n_workers=7, n_blocks=5,
                  control_variates=control_variates, max_iter=3, tol=0,
                  random_state=0)
    local = DistributedSparseElasticNet(**params).fit(X, y)
    remote = DistributedSparseElasticNet(n_jobs=2, **params).fit(X, y)
    assert_array_equal(remote.coef_, local.coef_)
    assert remote.intercept_ == local.intercept_
    assert 0 < np.count_nonzero(local.coef_) < local.coef_.size


def test_loky_model_larger_than_a_pack_of_messages():
    # Dense messages of 300001 values: a task computes and sends one worker's
    # message at a time (the pack buffer holds one), not all of its workers',
    # and the master broadcasts at the end of every round (a large model).
    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    X = sp.random(64, 300_000, density=1e-4, format="csr", random_state=0)
    y = rng.integers(0, 2, 64)
    params = dict(solver="gd", sparsifier="none", n_workers=5, step_size=0.5,
                  max_iter=3)
    local = fit("classifier", X, y, **params)
    remote = fit("classifier", X, y, n_jobs=2, **params)
    assert_array_equal(remote.coef_, local.coef_)
    assert remote.communication_["wire_uplink_payload_bytes"] == \
        local.communication_["uplink_bytes"]


def test_measured_wire_bytes():
    X, y = data("classifier", "sparse")
    est = fit("classifier", X, y, n_workers=7, n_jobs=2)
    comm = est.communication_
    assert comm["wire_uplink_payload_bytes"] == comm["uplink_bytes"]
    messages = comm["rounds"] * 7
    # one frame per message, with a 4-byte length
    assert comm["wire_uplink_framing_bytes"] == 4 * messages
    assert comm["wire_uplink_framing_bytes"] < 0.05 * comm["wire_uplink_payload_bytes"]
    # the broadcast goes once to each of the 2 processes, not to each worker
    assert comm["wire_downlink_framing_bytes"] == 4 * comm["rounds"] * 2
    assert comm["wire_downlink_payload_bytes"] == comm["downlink_bytes"] * 2 // 7
    assert "wire_uplink_payload_bytes" not in fit("classifier", X, y).communication_


@pytest.mark.parametrize("n_workers", [2, 7, 32])
@pytest.mark.parametrize("layout", ["sparse", "dense"])
@pytest.mark.parametrize("solver, kind", SOLVER_KINDS)
def test_dask_cluster_gives_the_in_process_model_bitwise(dask_client, solver, kind,
                                                         layout, n_workers):
    X, y = data(kind, layout)
    local = fit(kind, X, y, solver=solver, n_workers=n_workers)
    with parallel_config(backend="dask"):
        remote = fit(kind, X, y, solver=solver, n_workers=n_workers, n_jobs=2)
    assert_array_equal(remote.coef_, local.coef_)
    assert_array_equal(remote.intercept_, local.intercept_)
    assert remote.communication_["wire_uplink_payload_bytes"] == \
        local.communication_["uplink_bytes"]


def test_dask_backend_with_too_few_slots_fails_clearly(dask_client, monkeypatch):
    # The cluster has 2 slots; pretend it has 3: the third task cannot start.
    monkeypatch.setenv("SKLEARN_DSPARSE_CONNECT_TIMEOUT", "5")
    X, y = data("classifier", "sparse")
    start = time.monotonic()
    with monkeypatch.context() as patch:
        patch.setattr(JoblibEngine, "_effective_n_jobs", lambda self, backend: 3)
        with parallel_config(backend="dask"):
            with pytest.raises(WorkerProcessError, match="cannot run them all at once"):
                fit("classifier", X, y, n_workers=6, n_jobs=3)
    assert time.monotonic() - start < 30
    # the cluster is usable again afterwards
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with parallel_config(backend="dask"):
                fit("classifier", X, y, n_workers=4, n_jobs=2)
            break
        except WorkerProcessError:
            time.sleep(1)
    else:
        pytest.fail("the Dask cluster did not recover")


@pytest.fixture(scope="module")
def warm_kernels():
    """Compile (or load) the kernels of both engines' tasks before a fault
    test: a cold cache makes the first rounds slow, which a short round
    deadline would take for a silent worker."""
    X, y = data("classifier", "sparse")
    for solver in ("saga", "newton"):
        fit("classifier", X, y, solver=solver, n_workers=4, n_jobs=2, max_iter=2)


def _recovered(X, y, seconds=60):
    """Whether a fit on the Dask cluster succeeds again within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with parallel_config(backend="dask"):
                fit("classifier", X, y, n_workers=4, n_jobs=2, max_iter=3)
            return True
        except WorkerProcessError:
            time.sleep(1)
    return False


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_dask_worker_lost_mid_fit_fails_in_bounded_time(dask_client, monkeypatch, fault):
    # The Dask worker process that runs task 0 is killed (its nanny restarts
    # it) or stopped (a hung node), in the second epoch.
    monkeypatch.setenv("SKLEARN_DSPARSE_ROUND_TIMEOUT", "3")
    X, y = data("classifier", "sparse")
    stop = signal.SIGKILL if fault == "killed" else signal.SIGSTOP
    # Both Dask workers (a nanny restarting one leaves a single slot, and
    # joblib runs a single task in the driver's own thread).
    dask_client.wait_for_workers(2, timeout=60)

    def lose_a_worker(engine):
        assert engine.pids[0] != os.getpid()
        os.kill(engine.pids[0], stop)

    seen = interrupting(monkeypatch, lose_a_worker)
    start = time.monotonic()
    try:
        with parallel_config(backend="dask"):
            with pytest.raises(WorkerProcessError,
                               match="killed or crashed" if fault == "killed"
                               else "was silent for"):
                fit("classifier", X, y, n_workers=4, n_jobs=2, max_iter=5)
        assert time.monotonic() - start < 30
    finally:
        if fault == "frozen":
            os.kill(seen["engine"].pids[0], signal.SIGCONT)
    monkeypatch.undo()
    assert _recovered(X, y)
    dask_client.wait_for_workers(2, timeout=60)


def interrupting(monkeypatch, action, at=2, solver="saga"):
    """Make the joblib engine of ``solver`` call ``action(engine)`` before its
    ``at``-th epoch (the paper's solvers) or round ("newton")."""
    from sklearn_dsparse.engines import JoblibRoundEngine
    engine_class, name = (JoblibRoundEngine, "round") if solver == "newton" else \
        (JoblibEngine, "run_epoch")
    original = getattr(engine_class, name)
    seen = {"epochs": 0}

    def run(self, *args):
        seen["epochs"] += 1
        seen["engine"] = self
        if seen["epochs"] == at:
            action(self)
        return original(self, *args)

    monkeypatch.setattr(engine_class, name, run)
    return seen


@pytest.mark.parametrize("solver", ["saga", "newton"])
def test_killed_worker_process_fails_fast_and_cleans_up(monkeypatch, solver):
    X, y = data("classifier", "sparse")
    seen = interrupting(monkeypatch, lambda e: os.kill(e.pids[0], signal.SIGKILL),
                        solver=solver)
    start = time.monotonic()
    with pytest.raises(WorkerProcessError, match="killed or crashed|worker task failed"):
        fit("classifier", X, y, solver=solver, n_workers=4, n_jobs=2, max_iter=5)
    assert time.monotonic() - start < 60
    engine = seen["engine"]
    assert wait_until_gone(engine.pids) == []
    with pytest.raises(OSError):  # the port is closed
        Client(engine.master_address, authkey=b"x")


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("solver", ["saga", "newton"])
def test_frozen_worker_process_fails_at_the_deadline_and_is_ended(monkeypatch, solver):
    # SIGSTOP: what a hung node or a swapping machine looks like (the
    # connection stays open, nothing arrives).
    monkeypatch.setenv("SKLEARN_DSPARSE_ROUND_TIMEOUT", "3")
    X, y = data("classifier", "sparse")
    seen = interrupting(monkeypatch, lambda e: os.kill(e.pids[0], signal.SIGSTOP),
                        solver=solver)
    start = time.monotonic()
    with pytest.raises(WorkerProcessError, match=r"worker task 0 \(workers 0 to 1, "
                       r"process \d+ on host .*\) was silent for .* past the round "
                       r"deadline of .*SKLEARN_DSPARSE_ROUND_TIMEOUT = 3 s"):
        fit("classifier", X, y, solver=solver, n_workers=4, n_jobs=2, max_iter=5)
    engine = seen["engine"]
    assert seen["epochs"] == 2  # the deadline held through the healthy first one
    # the deadline (the slowest round so far, plus 3 s), then the frozen
    # task's grace before it is killed
    assert time.monotonic() - start < engine._armed + 2 * TASK_GRACE + 5
    assert wait_until_gone(engine.pids) == []
    assert not engine._thread.is_alive()
    with pytest.raises(OSError):  # the port is closed
        Client(engine.master_address, authkey=b"x")


def test_connections_keep_alive_and_have_the_round_deadline(monkeypatch):
    import socket
    import struct

    monkeypatch.setenv("SKLEARN_DSPARSE_ROUND_TIMEOUT", "7")
    seen = {}

    def look(engine):
        sock = socket.socket(fileno=os.dup(engine._conns[0].fileno()))
        try:
            seen["keepalive"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            seconds, micro = struct.unpack("@ll", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("@ll")))
            seen["timeout"] = seconds + micro / 1e6
        finally:
            sock.close()

    interrupting(monkeypatch, look, solver="newton")
    X, y = data("classifier", "sparse")
    fit("classifier", X, y, solver="newton", n_workers=4, n_jobs=2, max_iter=3)
    assert seen["keepalive"] == 1
    assert 7 <= seen["timeout"] < 8  # 7 s past the slowest round (of a second)


@pytest.mark.parametrize("solver", ["saga", "newton"])
def test_keyboard_interrupt_stops_the_workers(monkeypatch, solver):
    X, y = data("classifier", "sparse")

    def interrupt(engine):
        raise KeyboardInterrupt

    seen = interrupting(monkeypatch, interrupt, solver=solver)
    with pytest.raises(KeyboardInterrupt):
        fit("classifier", X, y, solver=solver, n_workers=4, n_jobs=2, max_iter=5)
    engine = seen["engine"]
    # loky keeps its idle worker processes for reuse; the tasks must have ended
    assert not engine._thread.is_alive()
    with pytest.raises(OSError):
        Client(engine.master_address, authkey=b"x")


def test_ctrl_c_during_the_rounds_stops_the_fit_and_the_workers(monkeypatch):
    # A real SIGINT, while the master waits for messages inside its compiled
    # rounds (epochs of 150 saga rounds of one row: the driver spends almost
    # all its time there): the read gives way, Python raises KeyboardInterrupt.
    from sklearn_dsparse.engines.joblib import _ROUND

    X, y = data("classifier", "sparse")
    main = threading.get_ident()

    def ctrl_c_mid_epoch(engine):
        # On an event, not a clock: once the compiled loop has counted rounds
        # of this epoch (a cold kernel cache only delays it).
        def watch():
            while engine._progress[_ROUND] < 20:
                time.sleep(0.001)
            signal.pthread_kill(main, signal.SIGINT)

        threading.Thread(target=watch, daemon=True).start()

    seen = interrupting(monkeypatch, ctrl_c_mid_epoch)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        fit("classifier", X, y, n_workers=4, n_jobs=2, solver="saga", batch_size=1,
            max_iter=100_000)
    assert time.monotonic() - start < 60
    engine = seen["engine"]
    assert seen["epochs"] == 2  # interrupted in the second epoch's rounds
    assert not engine._thread.is_alive()
    with pytest.raises(OSError):
        Client(engine.master_address, authkey=b"x")


def test_a_message_the_master_does_not_expect_fails_the_fit_clearly(monkeypatch):
    # Tasks that send worker 7's message of round 3 first (as a task of
    # another version might); threads, so that the patch reaches them.
    from sklearn_dsparse.engines import joblib as engine_module
    from sklearn_dsparse.engines._transport import (next_frame, write_all,
                                                    write_prefix)
    from sklearn_dsparse.messages import write_header

    def run(group, fd):
        frame = np.zeros(4 + 16, dtype=np.uint8)
        write_prefix(frame, 0, 16)
        write_header(frame[4:], 7, 3, np.empty(0, dtype=np.int32), 0)
        write_all(fd, frame)
        buffer, bounds = np.empty(1 << 16, dtype=np.uint8), np.zeros(2, dtype=np.int64)
        while next_frame(fd, buffer, bounds, True)[0] == 0:
            pass  # until the master closes the connection

    monkeypatch.setattr(engine_module._WorkerGroup, "run", run)
    X, y = data("classifier", "sparse")
    with parallel_config(backend="threading"):
        with pytest.raises(WorkerProcessError,
                           match="expected the message of worker 0 in round 0, got "
                                 "16 bytes from worker 7 for round 3"):
            fit("classifier", X, y, n_workers=4, n_jobs=2)


def test_client_without_the_key_is_refused(monkeypatch):
    X, y = data("classifier", "sparse")
    refused = []

    def intruder(engine):
        with pytest.raises(AuthenticationError):
            Client(engine.master_address, authkey=b"not the key")
        refused.append(True)

    interrupting(monkeypatch, intruder)
    local = fit("classifier", X, y, n_workers=4, max_iter=3)
    remote = fit("classifier", X, y, n_workers=4, n_jobs=2, max_iter=3)
    assert refused == [True]
    assert_array_equal(remote.coef_, local.coef_)


def test_nested_grid_search_gives_the_same_best_parameters():
    X, y = data("classifier", "sparse")
    grid = {"n_blocks": [4, 16], "blocks_per_worker": [1, 2]}

    def search(n_jobs_grid, n_jobs_est):
        est = DistributedSparseLogisticRegression(
            n_workers=4, max_iter=5, tol=0, random_state=0, n_jobs=n_jobs_est)
        return GridSearchCV(est, grid, cv=2, n_jobs=n_jobs_grid).fit(X, y)

    nested = search(2, 2)
    sequential = search(None, None)
    assert nested.best_params_ == sequential.best_params_
    assert_array_equal(nested.cv_results_["mean_test_score"],
                       sequential.cv_results_["mean_test_score"])


def test_worker_processes_do_not_import_scikit_learn():
    # Each process that imports scikit-learn costs ~120 MiB: a worker task
    # needs only the engine and the mathematics.
    import subprocess
    import sys

    code = ("import sys, sklearn_dsparse.engines.joblib; "
            "sys.exit(any(m.split('.')[0] == 'sklearn' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_worker_processes_need_a_posix_system(monkeypatch):
    monkeypatch.setattr(os, "name", "nt")
    X, y = data("classifier", "sparse")
    with pytest.raises(NotImplementedError, match="POSIX.*n_jobs=None"):
        fit("classifier", X, y, n_workers=4, n_jobs=2)


# solver="newton": rounds driven from Python over the standard library's
# connections (engines/rounds.py).

def newton_fit(kind, X, y, **params):
    return fit(kind, X, y, **{"solver": "newton", "max_iter": 4, **params})


@pytest.mark.parametrize("n_workers", [2, 7, 32])
@pytest.mark.parametrize("layout", ["sparse", "dense"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("sparsifier", ["none", "independent", "bernoulli"])
def test_loky_newton_gives_the_in_process_model_bitwise(sparsifier, kind, layout,
                                                        n_workers):
    X, y = data(kind, layout)
    local = newton_fit(kind, X, y, sparsifier=sparsifier, n_workers=n_workers)
    remote = newton_fit(kind, X, y, sparsifier=sparsifier, n_workers=n_workers,
                        n_jobs=2)
    assert_array_equal(remote.coef_, local.coef_)
    assert_array_equal(remote.intercept_, local.intercept_)
    assert np.any(local.coef_ != 0)
    for key in ("rounds", "uplink_bytes", "downlink_bytes", "blocks_sent"):
        assert remote.communication_[key] == local.communication_[key]
    assert remote.communication_["wire_uplink_payload_bytes"] == \
        local.communication_["uplink_bytes"]
    assert_array_equal(remote.history_["objective"], local.history_["objective"])


def test_loky_newton_multinomial_and_l1_bitwise():
    from conftest import abalone_classes
    X, y = abalone_classes()
    X, y = X[:900], y[:900]
    params = dict(C=2.0, l1_ratio=0.5, solver="newton", n_workers=6, tol=1e-6,
                  random_state=0)
    local = DistributedSparseLogisticRegression(**params).fit(X, y)
    remote = DistributedSparseLogisticRegression(n_jobs=2, **params).fit(X, y)
    assert local.coef_.shape == (3, X.shape[1])
    assert_array_equal(remote.coef_, local.coef_)
    assert_array_equal(remote.intercept_, local.intercept_)


def test_newton_measured_wire_bytes():
    X, y = data("classifier", "sparse")
    est = newton_fit("classifier", X, y, n_workers=7, n_jobs=2, max_iter=10)
    comm = est.communication_
    assert comm["wire_uplink_payload_bytes"] == comm["uplink_bytes"]
    assert comm["wire_uplink_framing_bytes"] == 4 * comm["rounds"] * 7
    # the broadcast goes once to each of the 2 processes, not to each worker
    assert comm["wire_downlink_payload_bytes"] == comm["downlink_bytes"] * 2 // 7
    assert comm["wire_downlink_framing_bytes"] == 4 * comm["rounds"] * 2


def test_dask_cluster_gives_the_in_process_newton_model_bitwise(dask_client):
    for kind in ("classifier", "regressor"):
        X, y = data(kind, "sparse")
        local = newton_fit(kind, X, y, n_workers=7, sparsifier="independent")
        with parallel_config(backend="dask"):
            remote = newton_fit(kind, X, y, n_workers=7, sparsifier="independent",
                                n_jobs=2)
        assert_array_equal(remote.coef_, local.coef_)
        assert_array_equal(remote.intercept_, local.intercept_)


def test_newton_runs_where_the_compiled_transport_cannot(monkeypatch):
    # The round engine uses multiprocessing.connection only: no POSIX needed.
    monkeypatch.setattr(os, "name", "nt")
    X, y = data("classifier", "sparse")
    local = newton_fit("classifier", X, y, n_workers=4)
    remote = newton_fit("classifier", X, y, n_workers=4, n_jobs=2)
    assert_array_equal(remote.coef_, local.coef_)


def test_a_script_that_fitted_with_n_jobs_exits_cleanly(tmp_path):
    # No "leaked semlock objects" from loky's or Dask's resource tracker, no
    # other warning, no process left: a user's script, run as one.
    script = tmp_path / "fit_with_n_jobs.py"
    script.write_text(textwrap.dedent("""
        import warnings
        from joblib import parallel_config
        from sklearn.datasets import load_breast_cancer
        from sklearn.preprocessing import StandardScaler
        from sklearn_dsparse import DistributedSparseLogisticRegression as D

        if __name__ == "__main__":
            X, y = load_breast_cancer(return_X_y=True)
            X = StandardScaler().fit_transform(X)
            for solver in ("newton", "saga"):
                D(solver=solver, n_jobs=2, max_iter=2000).fit(X, y)
            import distributed
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                          processes=True, host="127.0.0.1",
                                          dashboard_address=":0") as cluster, \\
                    distributed.Client(cluster):
                with parallel_config(backend="dask"):
                    D(n_jobs=2).fit(X, y)
            print("fitted")
    """))
    pytest.importorskip("distributed")
    done = subprocess.run([sys.executable, "-W", "always", str(script)],
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fitted"
    assert "leaked" not in done.stderr, done.stderr
    # Nothing from this library or from joblib (Dask may warn about itself).
    ours = [line for line in done.stderr.splitlines()
            if "Warning" in line and ("sklearn_dsparse" in line or "joblib" in line)]
    assert ours == [], done.stderr


# The fault matrix's peers: what connects to the master while a fit starts.

def _with_peers_at_start(monkeypatch, peers):
    """Run ``peers(address)`` when the master listens, before its tasks start."""
    from sklearn_dsparse.engines import _tasks

    original = _tasks.TaskEngine._run_tasks

    def run_tasks(self, launch, address, key):
        peers(address)
        return original(self, launch, address, key)

    monkeypatch.setattr(_tasks.TaskEngine, "_run_tasks", run_tasks)


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("peer", ["silent", "garbage", "wrong key", "200 at once"])
def test_peers_that_are_not_tasks_do_not_hold_up_the_fit(monkeypatch, peer):
    import socket

    opened = []

    def peers(address):
        if peer == "wrong key":
            with pytest.raises(AuthenticationError):
                Client(address, authkey=b"not the key")
            return
        for _ in range(200 if peer == "200 at once" else 1):
            sock = socket.create_connection(address, timeout=30)
            opened.append(sock)
            if peer == "garbage":
                sock.sendall(os.urandom(4096))
            # "silent": connect, and say nothing until the fit is over

    X, y = data("classifier", "sparse")
    local = fit("classifier", X, y, solver="newton", n_workers=4, max_iter=3)
    fit("classifier", X, y, solver="newton", n_workers=4, n_jobs=2, max_iter=3)
    fds = _open_fds()  # with loky's pool of processes up
    _with_peers_at_start(monkeypatch, peers)
    monkeypatch.setenv("SKLEARN_DSPARSE_CONNECT_TIMEOUT", "30")
    start = time.monotonic()
    remote = fit("classifier", X, y, solver="newton", n_workers=4, n_jobs=2, max_iter=3)
    # far less than the handshake's 10 s: nobody waited for the peers
    assert time.monotonic() - start < 8
    assert_array_equal(remote.coef_, local.coef_)
    assert len(opened) == {"wrong key": 0, "200 at once": 200}.get(peer, 1)
    for sock in opened:
        sock.close()
    # the master's ends close as their handshakes fail on the closed sockets
    deadline = time.monotonic() + 15
    while _open_fds() > fds and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_fds() <= fds


def test_master_that_tasks_cannot_reach_fails_fast(monkeypatch):
    # The tasks' connections are refused (a master_address the cluster's
    # nodes cannot reach): the fit says so as soon as the tasks have ended,
    # not after SKLEARN_DSPARSE_CONNECT_TIMEOUT.
    from sklearn_dsparse.engines import _tasks

    def unreachable(address, authkey, seconds=None):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(_tasks, "connect", unreachable)
    monkeypatch.setenv("SKLEARN_DSPARSE_CONNECT_TIMEOUT", "60")
    X, y = data("classifier", "sparse")
    start = time.monotonic()
    with parallel_config(backend="threading"):  # tasks that see the patch
        with pytest.raises(WorkerProcessError, match="2 of the 2 worker tasks ended "
                           "without connecting to the master at 127.0.0.1:"):
            fit("classifier", X, y, solver="newton", n_workers=4, n_jobs=2)
    assert time.monotonic() - start < 10


def _children():
    me = str(os.getpid())
    kids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:
                    kids.append(int(pid))
        except (FileNotFoundError, IndexError, ProcessLookupError):
            pass
    return kids


@pytest.mark.parametrize("solver", ["saga", "newton"])
def test_twenty_fits_in_a_row_leave_nothing_behind(solver):
    X, y = data("classifier", "sparse")
    for _ in range(2):  # loky's pool of worker processes is made, then reused
        fit("classifier", X, y, solver=solver, n_workers=4, n_jobs=2)
    fds, children = _open_fds(), len(_children())
    threads = threading.active_count()
    for _ in range(20):
        fit("classifier", X, y, solver=solver, n_workers=4, n_jobs=2)
    assert _open_fds() <= fds
    assert len(_children()) <= children
    assert threading.active_count() <= threads


def test_three_fits_at_once_from_three_threads():
    from concurrent.futures import ThreadPoolExecutor

    X, y = data("classifier", "sparse")
    params = [dict(solver="newton", n_workers=4), dict(solver="saga", n_workers=5),
              dict(solver="newton", n_workers=7, C=0.1)]
    local = [fit("classifier", X, y, **p) for p in params]
    with ThreadPoolExecutor(3) as pool:
        remote = list(pool.map(lambda p: fit("classifier", X, y, n_jobs=2, **p),
                               params))
    for a, b in zip(local, remote):
        assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("engine", ["epochs", "rounds"])
def test_a_task_ends_when_its_master_falls_silent(engine):
    # A master that connected its task and then says nothing while keeping
    # the connection open (hung, or stopped): the task ends after its idle
    # timeout instead of waiting for ever on the cluster's node.
    import multiprocessing
    from multiprocessing.connection import Listener

    from sklearn_dsparse.engines import joblib as epochs_module
    from sklearn_dsparse.engines import rounds as rounds_module

    serve = epochs_module.serve if engine == "epochs" else rounds_module.serve_rounds
    key = os.urandom(32)
    with Listener(("127.0.0.1", 0), authkey=key) as listener:
        task = multiprocessing.get_context("spawn").Process(
            target=serve, args=(listener.address, key, 1.0))
        task.start()
        conn = listener.accept()
        pid, _, _ = conn.recv()
        assert pid == task.pid
        task.join(timeout=60)
        assert task.exitcode == 0  # ended by itself, while the connection is open
        assert not conn.closed
        conn.close()
