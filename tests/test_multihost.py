"""Fits across hosts: a Dask scheduler and two Dask workers, each in its own
Linux network namespace (its own address, its own loopback, its own host
name), joined by veth pairs to a bridge that carries the driver's address.

The driver (this process) stays in the root namespace, on the bridge; the
workers reach it only through the bridge, as the nodes of a cluster reach
their client. Needs root (``ip netns``): skipped with its reason elsewhere,
except under CI (the environment variable ``CI``), where it must run.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_array_equal

import sklearn_dsparse
from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse.engines import WorkerProcessError
from sklearn_dsparse.engines import _tasks

from conftest import load

if os.environ.get("CI"):
    import distributed  # CI installs the dask extra: never skip there
else:
    distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")

#: Where the driver imports this package from (the checkout under test, or
#: where it was installed from it): the namespaced workers import the same
#: copy, and load the compiled kernels the suite has cached next to it
#: (another copy compiles them afresh, for a minute).
SOURCE = Path(sklearn_dsparse.__file__).resolve().parents[1]

RUN = os.getpid()  # in every name, so that two runs cannot collide
PREFIX = f"dsparse-{RUN}-"
BRIDGE = f"dsb{RUN}"  # interface names have at most 15 characters
HOSTS = ("sched", "w0", "w1")
SCHEDULER_PORT = 8786


def ip(*args, namespace=None, check=True):
    command = ["ip", *args] if namespace is None else \
        ["ip", "netns", "exec", namespace, "ip", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30,
                          check=check)


def _unprivileged(reason):
    # CI runs as root: there the test must run, never be skipped away.
    if os.environ.get("CI"):
        pytest.fail(f"the multi-host test cannot run under CI: {reason}")
    pytest.skip(f"the multi-host test needs root and Linux network namespaces: "
                f"{reason}")


def _check_privilege():
    if sys.platform != "linux":
        _unprivileged(f"this is {sys.platform}, not Linux")
    if shutil.which("ip") is None:
        _unprivileged("the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        _unprivileged("not running as root")
    probe = f"{PREFIX}probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        _unprivileged(f"`ip netns add` failed: {made.stderr.strip()}")
    ip("netns", "del", probe)


def _free_subnet():
    """An x such that no interface or route of this machine uses 10.213.x.0/24,
    10.214.x.1 or 10.215.x.1 (other runs and other tests may hold some)."""
    used = ip("-4", "addr").stdout + ip("-4", "route").stdout
    for i in range(254):
        x = (RUN + i) % 254 + 1
        if not any(f"10.21{k}.{x}." in used for k in (3, 4, 5)):
            return x
    raise RuntimeError("no free 10.213.x.0/24 subnet")


def leftovers():
    """This run's namespaces and links still on the machine."""
    ours = {BRIDGE, *(f"dsv{RUN}{i}" for i in range(len(HOSTS))),
            *(f"{PREFIX}{h}" for h in (*HOSTS, "probe"))}
    names = ip("netns", "list").stdout.split() + ip("-o", "link").stdout.split()
    return sorted({n.rstrip(":").split("@")[0] for n in names} & ours)


class Hosts:
    """The virtual network: addresses by role, the processes started."""

    def __init__(self, x):
        self.driver = f"10.213.{x}.1"
        self.address = {h: f"10.213.{x}.{2 + i}" for i, h in enumerate(HOSTS)}
        # An address of the driver that the namespaces have no route to.
        self.unroutable = f"10.214.{x}.1"
        # An address of the driver to which the workers route packets that
        # nobody receives: a firewall that drops them, a partition.
        self.silent = f"10.215.{x}.1"
        self.nobody = f"10.213.{x}.254"
        self.processes = {}
        self.namespaces = []
        self.links = []

    def namespace(self, host):
        return f"{PREFIX}{host}"


def _build_network(hosts):
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{hosts.driver}/24", "dev", BRIDGE)
    ip("addr", "add", f"{hosts.unroutable}/32", "dev", BRIDGE)
    ip("addr", "add", f"{hosts.silent}/32", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for i, host in enumerate(HOSTS):
        ns = hosts.namespace(host)
        ip("netns", "add", ns)
        hosts.namespaces.append(ns)
        # The pair's far end is made inside the namespace, named as a host's
        # interface.
        veth = f"dsv{RUN}{i}"  # at most 15 characters, as BRIDGE
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        hosts.links.append(veth)
        ip("link", "set", veth, "master", BRIDGE, "up")
        ip("addr", "add", f"{hosts.address[host]}/24", "dev", "eth0", namespace=ns)
        ip("link", "set", "eth0", "up", namespace=ns)
        # A host's loopback is up: 127.0.0.1 there is that host, not the driver.
        ip("link", "set", "lo", "up", namespace=ns)
        # The route to the silent address goes through a gateway with the
        # link address of no one on the bridge: its frames are flooded and
        # dropped, the connections get no answer at all.
        ip("neigh", "add", hosts.nobody, "lladdr", "02:00:00:00:00:fe", "dev", "eth0",
           "nud", "permanent", namespace=ns)
        ip("route", "add", f"{hosts.silent}/32", "via", hosts.nobody, namespace=ns)


#: Names the host (in its own UTS namespace), then becomes ``python -m ...``.
_AS_HOST = ("import os, socket, sys; socket.sethostname(sys.argv[1]); "
            "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[2:]])")


def _start(hosts, host, module, *args, env, log_dir):
    """``python -m module args`` in ``host``'s namespace, under its own host
    name, so that the engine's record of each task's host tells the workers
    apart."""
    log = open(log_dir / f"{host}.log", "w")
    command = ["ip", "netns", "exec", hosts.namespace(host), "unshare", "--uts",
               sys.executable, "-c", _AS_HOST, f"{PREFIX}{host}", module, *args]
    # `ip netns exec`, `unshare` and `execv` keep the process id: it is the
    # server's, and its session holds everything the server starts.
    hosts.processes[host] = (subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir,
        start_new_session=True), log)


def _stop(hosts):
    for process, log in hosts.processes.values():
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
        log.close()


def _log_tails(hosts, log_dir):
    return "\n".join(f"--- {h}:\n" + (log_dir / f"{h}.log").read_text()[-2000:]
                     for h in hosts.processes)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _check_privilege()
    log_dir = tmp_path_factory.mktemp("multihost")
    hosts = Hosts(_free_subnet())
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(
               [str(SOURCE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # The namespaces have no default route: a Dask process that is not told
    # its address guesses one from a route to the internet, fails, and falls
    # back to the machine's host name, which the others cannot reach.
    scheduler = f"tcp://{hosts.address['sched']}:{SCHEDULER_PORT}"
    client = None
    try:
        _build_network(hosts)
        _start(hosts, "sched", "distributed.cli.dask_scheduler",
               "--host", hosts.address["sched"], "--port", str(SCHEDULER_PORT),
               "--no-dashboard", "--idle-timeout", "600",
               env=env, log_dir=log_dir)
        for w in ("w0", "w1"):
            _start(hosts, w, "distributed.cli.dask_worker", scheduler,
                   "--host", hosts.address[w], "--nthreads", "1", "--no-nanny",
                   "--no-dashboard", "--name", w, "--death-timeout", "60",
                   "--local-directory", str(log_dir / w),
                   env=env, log_dir=log_dir)
        try:
            client = distributed.Client(scheduler, timeout=60)
            client.wait_for_workers(2, timeout=60)
        except Exception as exc:
            raise RuntimeError("the namespaced Dask cluster did not start:\n"
                               + _log_tails(hosts, log_dir)) from exc
        yield hosts, client
    finally:
        if client is not None:
            client.close()
        _stop(hosts)
        # The pairs first: a deleted namespace takes its end of a pair with
        # it, but later, in the kernel's own time.
        for link in hosts.links:
            ip("link", "del", link, check=False)
        for ns in hosts.namespaces:
            ip("netns", "del", ns, check=False)
        ip("link", "del", BRIDGE, check=False)
        assert leftovers() == []


def data():
    X, y = load("a1a")
    return X[:600], y[:600]


def fit(X, y, **params):
    return DistributedSparseLogisticRegression(C=0.5).set_params(
        **{"max_iter": 4, "tol": 0, "random_state": 0, "n_workers": 7,
           **params}).fit(X, y)


@pytest.fixture
def engines(monkeypatch):
    """The engines the fits make, as they start their tasks."""
    made = []
    launch = _tasks.TaskEngine._launch

    def recording(self, *args):
        made.append(self)
        return launch(self, *args)

    monkeypatch.setattr(_tasks.TaskEngine, "_launch", recording)
    return made


@pytest.mark.parametrize("solver", ["newton", "saga"])
def test_fit_across_hosts_gives_the_in_process_model_bitwise(cluster, engines, solver):
    hosts, client = cluster
    X, y = data()
    local = fit(X, y, solver=solver)
    with parallel_config(backend="dask"):
        remote = fit(X, y, solver=solver, n_jobs=2, master_address=hosts.driver)
    assert_array_equal(remote.coef_, local.coef_)
    assert_array_equal(remote.intercept_, local.intercept_)
    assert np.any(local.coef_ != 0)
    assert remote.communication_["wire_uplink_payload_bytes"] == \
        local.communication_["uplink_bytes"]
    # The tasks ran in the namespaced workers' processes, one on each host.
    (engine,) = engines
    assert engine.master_address[0] == hosts.driver
    workers = {hosts.processes[w][0].pid: w for w in ("w0", "w1")}
    assert sorted(engine.pids) == sorted(workers)
    assert sorted(engine.hosts) == [f"{PREFIX}w0", f"{PREFIX}w1"]
    for pid, w in workers.items():
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == \
            os.stat(f"/run/netns/{hosts.namespace(w)}").st_ino
    # ... running the driver's copy of the code.
    imported = client.run(lambda: __import__("sklearn_dsparse").__file__)
    assert set(imported.values()) == {sklearn_dsparse.__file__}


def _fails_fast(address, reason, **params):
    """Seconds until the fit fails saying that no task reached the master at
    ``address``, and why, from each worker's host."""
    X, y = data()
    start = time.monotonic()
    with parallel_config(backend="dask"):
        with pytest.raises(WorkerProcessError) as error:
            fit(X, y, n_jobs=2, **params)
    seconds = time.monotonic() - start
    assert re.match(
        "2 of the 2 worker tasks ended without connecting to the master at "
        rf"{re.escape(address)}:\d+ \({PREFIX}w0: {reason}; {PREFIX}w1: {reason}\): "
        "set master_address to an address of this machine that the workers can "
        "reach", str(error.value)), str(error.value)
    return seconds


@pytest.fixture
def patient_driver(monkeypatch):
    # The driver would wait a minute for tasks that do not connect: the
    # tasks' own reports must come well before it.
    monkeypatch.setenv("SKLEARN_DSPARSE_CONNECT_TIMEOUT", "60")


@pytest.mark.usefixtures("patient_driver")
def test_default_master_address_fails_fast_across_hosts(cluster, monkeypatch):
    # 127.0.0.1 is each worker's own loopback: the connections are refused.
    monkeypatch.delenv("SKLEARN_DSPARSE_MASTER_ADDRESS", raising=False)
    assert _fails_fast("127.0.0.1", "Connection refused") < 30


@pytest.mark.usefixtures("patient_driver")
def test_master_address_the_workers_cannot_route_to_fails_fast(cluster):
    hosts, _ = cluster
    assert _fails_fast(hosts.unroutable, "Network is unreachable",
                       master_address=hosts.unroutable) < 30


@pytest.mark.usefixtures("patient_driver")
def test_master_address_whose_packets_are_dropped_fails_fast(cluster):
    # No refusal, no unreachable network: the tasks' connection attempts get
    # no answer at all, and they give up after CONNECT_SECONDS.
    hosts, client = cluster
    seconds = _fails_fast(hosts.silent, "timed out", master_address=hosts.silent)
    assert _tasks.CONNECT_SECONDS <= seconds < _tasks.CONNECT_SECONDS + 10
    # The workers are free again (not connecting for minutes): a fit runs.
    X, y = data()
    with parallel_config(backend="dask"):
        remote = fit(X, y, n_jobs=2, master_address=hosts.driver)
    assert_array_equal(remote.coef_, fit(X, y).coef_)
