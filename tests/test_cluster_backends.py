"""Ray and Spark run the worker tasks through the same joblib seam as loky
and Dask: on a local cluster of each, the in-process model bit for bit, and a
killed task gives loky's error.

Each cluster starts once for the module (Ray: ``ray.init(num_cpus=2)``;
Spark: a ``local[2]`` session) and its shutdown must leave no process of it
behind.
"""

import os
import signal
import sys
import time
from multiprocessing.connection import Client

import numpy as np
import pytest
from joblib import Parallel, delayed, parallel_config
from numpy.testing import assert_array_equal

import sklearn_dsparse
from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse.engines import JoblibEngine, JoblibRoundEngine, WorkerProcessError
from sklearn_dsparse.engines._tasks import TaskEngine

from conftest import load

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # joblibspark's notes on a local master and on n_jobs above the slots,
    # its use of joblib's older interface and pyspark's of its threads; pyspark
    # on pandas 3.
    pytest.mark.filterwarnings("ignore:Spark local mode:UserWarning"),
    pytest.mark.filterwarnings("ignore:User-specified n_jobs:UserWarning"),
    pytest.mark.filterwarnings("ignore:`apply_async` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Spark session is not provided:UserWarning"),
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support:FutureWarning"),
]


def _descendants(root=None):
    """Process ids of every live descendant of ``root`` (this process)."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(pid))
    found, todo = [], [root or os.getpid()]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return set(found)


def _left_after(pids, seconds=30):
    """The command lines of those of ``pids`` still alive after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := pids & _descendants()) and time.monotonic() < deadline:
        time.sleep(0.2)
    commands = []
    for pid in left:
        try:
            with open(f"/proc/{pid}/cmdline") as f:
                commands.append(f.read().replace("\0", " ")[:200])
        except FileNotFoundError:
            pass
    return commands


def _workers_import_this_package(env):
    """Put the folder of the driver's sklearn_dsparse first on the PYTHONPATH
    that the cluster's processes, started next, inherit: the driver may run
    a checkout (``python -m pytest`` imports the one in the current folder)
    where the workers would import an installed copy."""
    folder = os.path.dirname(os.path.dirname(sklearn_dsparse.__file__))
    env.setenv("PYTHONPATH", os.pathsep.join(
        [folder] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def _check_workers_run_this_package(backend):
    # Otherwise a comparison below would test an installed copy, not this one.
    # A lambda travels by value: the workers cannot import this test module.
    with parallel_config(backend=backend):
        seen = Parallel(n_jobs=2)(delayed(lambda: __import__("sklearn_dsparse").__file__)()
                                  for _ in range(2))
    assert seen == [sklearn_dsparse.__file__] * 2, (
        "the cluster's workers import another sklearn_dsparse: put this "
        "checkout on PYTHONPATH")


@pytest.fixture(scope="module")
def ray_backend():
    ray = pytest.importorskip("ray")
    from joblib.externals.loky.backend.resource_tracker import ensure_running
    from joblib.pool import PicklingPool
    from ray.util.joblib import register_ray

    # joblib's resource tracker, which Ray's backend starts, lives as long as
    # this process does: not one of Ray's.
    ensure_running()
    before = _descendants()
    # Ray's backend swaps the base class of joblib's PicklingPool for its own
    # Pool, for the whole process: put it back for the tests that follow.
    bases = PicklingPool.__bases__
    env = pytest.MonkeyPatch()
    _workers_import_this_package(env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        register_ray()
        _check_workers_run_this_package("ray")
        yield "ray"
    finally:
        ray.shutdown()
        PicklingPool.__bases__ = bases
        env.undo()
        assert _left_after(_descendants() - before) == []


@pytest.fixture(scope="module")
def spark_backend():
    pytest.importorskip("pyspark")
    joblibspark = pytest.importorskip("joblibspark")
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    before = _descendants()
    env = pytest.MonkeyPatch()
    # The Python of the workers (pyspark reads it when the context starts):
    # this one, else it is `python3` on PATH.
    env.setenv("PYSPARK_PYTHON", sys.executable)
    _workers_import_this_package(env)
    spark = (SparkSession.builder.master("local[2]").appName("sklearn-dsparse tests")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             # Everything is on this machine: loopback, as the tasks' master.
             .config("spark.driver.host", "127.0.0.1")
             # A short session: the JVM's quick compiler alone starts it in
             # less than half the time (9-10 s against 22-29 s, loaded machine).
             .config("spark.driver.extraJavaOptions",
                     "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        joblibspark.register_spark()
        _check_workers_run_this_package("spark")
        yield "spark"
    finally:
        spark.stop()
        # stop() leaves the JVM that pyspark launched; it ends when its stdin
        # closes.
        gateway = SparkContext._gateway
        if gateway is not None:
            gateway.shutdown()
            gateway.proc.stdin.close()
            gateway.proc.wait(timeout=30)
            SparkContext._gateway = SparkContext._jvm = None
        env.undo()
        assert _left_after(_descendants() - before) == []


@pytest.fixture
def backend(request):
    return request.getfixturevalue(f"{request.param}_backend")


def data():
    X, y = load("a1a")
    return X[:600], y[:600]


def fit(X, y, **params):
    return DistributedSparseLogisticRegression(
        **{"C": 0.5, "n_workers": 7, "max_iter": 3, "tol": 0, "random_state": 0,
           **params}).fit(X, y)


@pytest.fixture
def engines(monkeypatch):
    """The task engines that the fits of a test start."""
    started = []
    launch = TaskEngine._launch

    def recording(self, *args):
        started.append(self)
        return launch(self, *args)

    monkeypatch.setattr(TaskEngine, "_launch", recording)
    return started


def _assert_bitwise(backend, engines, solver, n_jobs):
    X, y = data()
    local = fit(X, y, solver=solver)
    with parallel_config(backend=backend):
        remote = fit(X, y, solver=solver, n_jobs=n_jobs)
    assert_array_equal(remote.coef_, local.coef_)
    assert_array_equal(remote.intercept_, local.intercept_)
    assert np.any(local.coef_ != 0)
    for key in ("rounds", "uplink_bytes", "downlink_bytes"):
        assert remote.communication_[key] == local.communication_[key]
    assert remote.communication_["wire_uplink_payload_bytes"] == \
        local.communication_["uplink_bytes"]
    # Two tasks (n_jobs=-1: the cluster's 2 slots), at once, in the cluster's
    # processes.
    (engine,) = engines
    assert len(set(engine.pids)) == 2
    assert os.getpid() not in engine.pids


# Each Ray fit starts fresh actor processes (seconds): two fits cover both
# engines and both ways of giving n_jobs.
@pytest.mark.parametrize("solver, n_jobs", [("newton", 2), ("saga", -1)])
def test_ray_gives_the_in_process_model_bitwise(ray_backend, engines, solver, n_jobs):
    _assert_bitwise(ray_backend, engines, solver, n_jobs)


@pytest.mark.parametrize("n_jobs", [2, -1])
@pytest.mark.parametrize("solver", ["newton", "saga"])
def test_spark_gives_the_in_process_model_bitwise(spark_backend, engines, solver,
                                                  n_jobs):
    _assert_bitwise(spark_backend, engines, solver, n_jobs)


def _kill_task_0_at(monkeypatch, solver, at=2):
    """Kill task 0's process before the ``at``-th round (newton) or epoch."""
    engine_class, name = (JoblibRoundEngine, "round") if solver == "newton" else \
        (JoblibEngine, "run_epoch")
    original = getattr(engine_class, name)
    calls = []

    def run(self, *args):
        calls.append(self)
        if len(calls) == at:
            os.kill(self.pids[0], signal.SIGKILL)
        return original(self, *args)

    monkeypatch.setattr(engine_class, name, run)


# One engine on each backend (both fail the same way on loky).
@pytest.mark.parametrize("backend, solver", [("ray", "saga"), ("spark", "newton")],
                         indirect=["backend"])
def test_killed_task_fails_as_on_loky_and_the_cluster_fits_again(
        backend, engines, monkeypatch, solver):
    X, y = data()
    _kill_task_0_at(monkeypatch, solver)
    start = time.monotonic()
    with parallel_config(backend=backend):
        with pytest.raises(WorkerProcessError, match="lost the connection to a worker "
                           "process .*: it was killed or crashed. The fit is abandoned."):
            fit(X, y, solver=solver, n_jobs=2, max_iter=5)
    assert time.monotonic() - start < 60
    (engine,) = engines
    # The backend's call returned: every task ended, the surviving one too.
    engine._thread.join(timeout=30)
    assert not engine._thread.is_alive()
    assert _left_after({engine.pids[0]}) == []
    with pytest.raises(OSError):  # the master's port is closed
        Client(engine.master_address, authkey=b"x")
    if backend == "ray":
        return  # every fit starts new actors (seconds each)
    # Spark replaces the Python worker that was killed.
    monkeypatch.undo()
    with parallel_config(backend=backend):
        assert_array_equal(fit(X, y, solver=solver, n_jobs=2).coef_,
                           fit(X, y, solver=solver).coef_)


def test_spark_with_fewer_slots_than_tasks_fails_clearly(spark_backend, monkeypatch):
    # local[2] runs 2 tasks at once: a third waits for a slot, which the first
    # two hold until the fit ends.
    monkeypatch.setenv("SKLEARN_DSPARSE_CONNECT_TIMEOUT", "3")
    X, y = data()
    start = time.monotonic()
    with parallel_config(backend=spark_backend):
        with pytest.raises(WorkerProcessError, match=r"only 2 of 3 worker tasks started "
                           r"within 3 s: the joblib backend cannot run them all at once"):
            fit(X, y, n_jobs=3)
    assert time.monotonic() - start < 30


def test_a_task_that_cannot_start_on_the_workers_names_their_environment(monkeypatch):
    # What a task raises on workers whose Python lacks the package (on Spark
    # behind joblibspark's own TypeError); the threading backend stands in
    # for the clusters.
    from sklearn_dsparse.engines import joblib as epochs

    def serve(*args):
        raise ModuleNotFoundError("No module named 'sklearn_dsparse'")

    monkeypatch.setattr(epochs, "serve", serve)
    X, y = data()
    with parallel_config(backend="threading"):
        with pytest.raises(WorkerProcessError, match=(
                r"a worker task failed: ModuleNotFoundError\(.*\) before connecting "
                r"to the master\. Are sklearn-dsparse and its dependencies installed "
                r"in the Python environment of the backend's workers, in the "
                r"driver's versions\?")):
            fit(X, y, solver="saga", n_jobs=2)


def test_n_jobs_minus_one_needs_a_backend_that_counts_its_workers(monkeypatch):
    # Ray's backend before ray.init() cannot count its CPUs; one task run in
    # the driver would look like a distributed fit.
    from joblib._parallel_backends import ThreadingBackend

    def cannot_tell(self, n_jobs):
        raise RuntimeError("Ray has not been started yet.")

    monkeypatch.setattr(ThreadingBackend, "effective_n_jobs", cannot_tell)
    X, y = data()
    with parallel_config(backend="threading"):
        with pytest.raises(ValueError, match=(
                r"n_jobs=-1 asks the active joblib backend \(ThreadingBackend\) for its "
                r"number of workers, and it cannot tell \(Ray has not been started "
                r"yet.\)\. Start its cluster first \(for Ray, ray.init\(\)\), or give "
                r"n_jobs a positive number.")):
            fit(X, y, n_jobs=-1)
