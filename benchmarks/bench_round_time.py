"""Time of one synchronous round: in-process, loky and Dask against a bare ping.

    python benchmarks/bench_round_time.py

About 5-6 minutes on 2 cores (it keeps itself under a ~345 s budget and says
what it skipped).  The a9a file is read from ``<repo>/datasets``;
``DSPARSE_DATASETS`` overrides.

What is measured
----------------
1. Engine round time.  Synthetic CSR data: ``n_features`` = d in {1e2, 1e5,
   1e6}, ``rows = max(4 n, 256)``, exactly 10 non-zeros per row, random binary
   labels.  ``DistributedSparseLogisticRegression(solver="gd", n_workers=n,
   n_jobs=..., max_iter=k, tol=0, random_state=0)``, n_blocks="auto" (so m =
   min(d + 1, n) blocks, tau = 1 block per worker) and control variates on
   ("auto").  With gd one epoch is one round, so the round time is the median
   of the differences of ``history_["seconds"]`` over epochs 2..k (epoch 1
   holds the engine start).  ``step_size`` is fixed to 0.5 instead of "auto":
   the automatic rule runs an ARPACK eigen-solve per shard, which costs about
   1 s per worker at d = 1e6 (70 s for n = 64) before the first round; the
   step does not change the work or the bytes of a gd round (no l1, every
   block moves through hbar anyway).  Engines: the in-process engine
   (n_jobs=None), loky (n_jobs=2) and Dask (n_jobs=2 under
   ``parallel_config(backend="dask")`` on a 2-process LocalCluster started and
   closed here).
   Rows marked ``+ND`` run the same fit with the worker task's ``serve``
   wrapped so that it sets TCP_NODELAY once more.  They were the diagnosis of
   the 44 ms rounds of an engine that set it only on the master's side (Nagle
   plus delayed acknowledgements); ``JoblibEngine`` now sets it on both ends,
   so these rows are a regression check: they must match the plain rows.
2. Bare ping.  The same transport with no model code: a
   ``multiprocessing.connection.Listener`` on 127.0.0.1 with an authkey and
   backlog 2, TCP_NODELAY on both ends, 2 spawned client processes hosting n/2
   logical workers each.  A round: each client sends, per hosted worker, one
   frame of the size of the library's message (16-byte header, tau * 4 id
   bytes, or none when tau = m, and tau * (d + 1) / m float64 values); the
   master receives them all (client by client, as the engine does) and sends
   each client one frame of the size of the broadcast of the expected union of
   the blocks, u = m (1 - (1 - tau/m)^n) blocks (ids omitted when u = m).
   Round time = median of the master's broadcast-to-broadcast intervals, after
   5 warm-up rounds, over >= 1 s (at least 20 and at most 3000 rounds).
   "bare" moves each frame with one ``send_bytes`` / ``recv_bytes`` (the
   issue's reference round); "stream" moves the same frames the way the engine
   does (``engines._transport.write_all`` and ``next_frame``, compiled: all
   the frames of a client's round in one write; reads take whatever has
   arrived, called once per frame from Python here), the like-for-like
   floor of the engine's transport.  (The engine also sends each task a
   12-byte epoch command, in the broadcast's write, that the ping does not
   need.)  The column "bare Nagle" repeats the plain ping with TCP_NODELAY on
   the master's side only: what a round costs when one end forgets it (about
   44 ms for small messages).
   The machine's speed drifts by tens of percent within minutes, so for each
   configuration the loky fit and the two pings take turns, ``REPEATS[d]``
   times; the loky row shows the median round time and the median of the
   per-repeat ratios.
3. The table: round times, ratios engine / bare and engine / stream, bytes
   per round and the effective rate (bytes moved up + down per round, payload
   + 4-byte frame prefixes, / round time).  For the engines the bytes are the
   ones the engine measured on its connections (``communication_["wire_*"]``)
   divided by the rounds.  Targets: loky <= 2x the bare ping; >= 1 GB/s
   effective for the d >= 1e5 models over a real transport (loky and Dask).
4. a9a: wall time of a whole fit, ``DistributedSparseLogisticRegression(
   n_workers=16, max_iter=20, tol=0, random_state=0)`` (saga), in-process vs
   n_jobs=2 (loky), after a warm-up fit of each; median of 3, or of as many
   loky fits as the time budget allows (a loky fit is ~2 min when every round
   waits for a delayed ACK); if none fits, the whole-fit time is extrapolated
   from the warm-up's epoch and marked so.
"""

import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from sklearn_dsparse._testing import datasets_dir as shared_datasets_dir
from sklearn_dsparse.engines._transport import check, next_frame, no_delay, write_all
from sklearn_dsparse.engines.joblib import _read_buffer as read_buffers

COMMAND = "python benchmarks/bench_round_time.py"
SIZES = (100, 100_000, 1_000_000)
N_WORKERS = (2, 16, 64)
EPOCHS = {100: 100, 100_000: 30, 1_000_000: 15}  # k, epochs per fit
# Interleaved loky fits and bare pings per configuration.  Single fits of the
# 100-parameter model spread 3x on 2 shared cores (where the scheduler puts
# three processes decides), so those cheap rows take more turns.
REPEATS = {100: 7, 100_000: 3, 1_000_000: 3}
NNZ_PER_ROW = 10
STEP = 0.5
BUDGET = 345.0  # seconds for the whole run
PART1_DEADLINE = 215.0  # no new round-time configuration after this
RATIO_TARGET = 2.0
RATE_TARGET = 1e9  # bytes / s
LARGE = 100_000  # sizes >= this get the bytes-per-second target
FRAME = 4  # multiprocessing.connection's length prefix
HEADER = 16

STARTED = time.perf_counter()


def elapsed():
    return time.perf_counter() - STARTED


def log(msg):
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()




# ----------------------------------------------------------------- engines


def serve_nodelay(address, authkey, idle_timeout):
    """Diagnostic worker task: the library's ``serve`` with TCP_NODELAY set on
    the worker's side by the connecting code too (the library's ``serve`` now
    sets it itself, so "+ND" rows should match the plain ones).  Defined in
    __main__ so that loky and Dask ship it by value; it patches the task
    module's ``connect`` only for its own call."""
    import os as _os
    import socket as _socket

    from sklearn_dsparse.engines import _tasks
    from sklearn_dsparse.engines import joblib as engine_module

    original = _tasks.connect

    def client(*args, **kwargs):
        conn = original(*args, **kwargs)
        sock = _socket.socket(fileno=_os.dup(conn.fileno()))
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        finally:
            sock.close()
        return conn

    _tasks.connect = client
    try:
        return engine_module.serve(address, authkey, idle_timeout)
    finally:
        _tasks.connect = original


class worker_nodelay:
    """Context: the engine launches ``serve_nodelay`` instead of ``serve``."""

    def __enter__(self):
        from sklearn_dsparse.engines import joblib as engine_module
        self.module, self.original = engine_module, engine_module.serve
        engine_module.serve = serve_nodelay

    def __exit__(self, *exc):
        self.module.serve = self.original
        return False


def synthetic(d, n, seed=0):
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    rows = max(4 * n, 256)
    per_row = min(NNZ_PER_ROW, d)
    indices = np.concatenate([np.sort(rng.choice(d, size=per_row, replace=False))
                              for _ in range(rows)]).astype(np.int32)
    indptr = (np.arange(rows + 1) * per_row).astype(np.int32)
    data = rng.random(indices.size) + 0.5
    X = sp.csr_matrix((data, indices, indptr), shape=(rows, d))
    y = rng.integers(0, 2, rows)
    return X, y


def fit_rounds(X, y, n, n_jobs, k):
    """Median round time (epochs 2..k) and wire bytes per round."""
    from sklearn_dsparse import DistributedSparseLogisticRegression
    est = DistributedSparseLogisticRegression(
        solver="gd", n_workers=n, n_jobs=n_jobs, max_iter=k, tol=0, random_state=0,
        step_size=STEP)
    est.fit(X, y)
    diffs = np.diff(est.history_["seconds"])
    comm = est.communication_
    rounds = comm["rounds"]
    assert rounds == k == diffs.size, (rounds, k, diffs.size)
    wire = sum(v for key, v in comm.items() if key.startswith("wire_"))
    return float(np.median(diffs[1:])), (wire / rounds if wire else None)


# --------------------------------------------------------------- bare ping


def ping_sizes(d, n):
    """Sizes of one worker's message and of the broadcast, as the library would
    send them for n workers and d features (intercept included)."""
    p1 = d + 1
    m = min(p1, n)
    tau = max(1, round(m / n))
    block = p1 / m
    up_ids = 0 if tau == m else tau * 4
    up_values = int(round(tau * block)) * 8
    u = m * (1.0 - (1.0 - tau / m) ** n)
    down_ids = 0 if round(u) >= m else int(round(u)) * 4
    down_values = int(round(u * block)) * 8
    return HEADER + up_ids + up_values, HEADER + down_ids + down_values


def _framed(payload, copies=1):
    """``copies`` frames of ``payload`` bytes as the connection frames them."""
    return (len(payload).to_bytes(4, "big") + payload) * copies


def _ping_client(address, key, hosted, up, down, nodelay, stream):
    from multiprocessing.connection import Client
    conn = Client(address, authkey=key)
    if nodelay:
        no_delay(conn)
    message = bytes(up)
    burst = np.frombuffer(_framed(message, hosted), dtype=np.uint8)
    fd, buffer = conn.fileno(), read_buffers(1, down)[0]
    bounds = np.zeros(2, dtype=np.int64)
    try:
        while True:
            if stream:
                check(write_all(fd, burst))
                status, offset, _ = next_frame(fd, buffer, bounds, True)
                check(status)
                stop = buffer[offset]
            else:
                for _ in range(hosted):
                    conn.send_bytes(message)
                stop = conn.recv_bytes()[0]
            if stop:
                return
    finally:
        conn.close()


def bare_ping(d, n, client_nodelay=True, stream=False, min_seconds=1.0,
              min_rounds=20, max_rounds=3000, warmup=5):
    """Median round time of the bare ping, and bytes moved per round.

    Every message is one frame, as the engine sends it.  ``stream``: move the
    frames with the engine's compiled reads and writes (``_transport``: a
    task's frames in one write, reads take whatever has arrived) rather than
    one ``send_bytes`` / ``recv_bytes`` per frame."""
    import multiprocessing as mp
    from multiprocessing.connection import Listener
    up, down = ping_sizes(d, n)
    n_procs = min(2, n)
    hosted = [len(g) for g in np.array_split(np.arange(n), n_procs)]
    key = os.urandom(32)
    ctx = mp.get_context("spawn")
    with Listener(("127.0.0.1", 0), authkey=key, backlog=n_procs) as listener:
        procs = [ctx.Process(target=_ping_client, daemon=True,
                             args=(listener.address, key, h, up, down, client_nodelay,
                                   stream))
                 for h in hosted]
        for p in procs:
            p.start()
        conns = []
        for _ in procs:
            conn = listener.accept()
            no_delay(conn)
            conns.append(conn)
        buffers = read_buffers(len(conns), up)
        bounds = np.zeros((len(conns), 2), dtype=np.int64)
        # Clients may connect in any order; any order serves (they host the
        # same numbers of workers up to one).
        go, stop = bytes(down), b"\x01" + bytes(down - 1)
        go_framed, stop_framed = (np.frombuffer(_framed(b), dtype=np.uint8)
                                  for b in (go, stop))
        stamps = []
        t_end = None
        rnd = 0
        while True:
            for i, (conn, h) in enumerate(zip(conns, hosted)):
                if stream:
                    for _ in range(h):
                        check(next_frame(conn.fileno(), buffers[i], bounds[i], True)[0])
                else:
                    for _ in range(h):
                        conn.recv_bytes()
            now = time.perf_counter()
            rnd += 1
            if rnd == warmup:
                t_end = now + min_seconds
            last = (rnd >= max_rounds + warmup or
                    (t_end is not None and now >= t_end
                     and rnd >= min_rounds + warmup))
            for i, conn in enumerate(conns):
                if stream:
                    check(write_all(conn.fileno(), stop_framed if last else go_framed))
                else:
                    conn.send_bytes(stop if last else go)
            stamps.append(now)
            if last:
                break
        for conn in conns:
            conn.close()
        for p in procs:
            p.join(10)
    times = np.diff(stamps[warmup - 1:])
    moved = n * (FRAME + up) + n_procs * (FRAME + down)
    return float(np.median(times)), moved, times.size


# ------------------------------------------------------------------- report


def fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:9.3f}"


def fmt_rate(bytes_, t):
    if bytes_ is None or t is None:
        return "-"
    return f"{bytes_ / t / 1e9:6.3f}"


def verdicts(engine, d, ratio, rate):
    base = engine.split("+")[0]
    diag = "+ND" in engine
    ratio_v = rate_v = "-"
    if base == "loky" and ratio is not None:
        ratio_v = "met" if ratio <= RATIO_TARGET else "NOT MET"
    if base in ("loky", "dask") and d >= LARGE and rate is not None:
        rate_v = "met" if rate >= RATE_TARGET else "NOT MET"
    if diag:
        ratio_v = ratio_v if ratio_v == "-" else f"({ratio_v})"
        rate_v = rate_v if rate_v == "-" else f"({rate_v})"
    return ratio_v, rate_v


def print_table(rows, bare):
    head = (f"{'engine':<10} {'n':>3} {'d':>8} {'k':>3} {'round ms':>9} "
            f"{'bare ms':>9} {'ratio':>7} {'stream':>9} {'ratioSt':>7} "
            f"{'bareNagle':>9} {'MB/round':>9} "
            f"{'GB/s':>6} {'bareGB/s':>8}  {'<=2x bare':<10} {'>=1GB/s':<9} note")
    print(head)
    print("-" * len(head))
    for r in rows:
        key = (r["n"], r["d"])
        b = bare.get(key, {})
        bt, bb, bn = b.get("t"), b.get("bytes"), b.get("t_nagle")
        bs = b.get("t_stream")
        t = r.get("t")
        # loky: the median of the ratios of interleaved repeats; others: of medians
        ratio = r.get("ratio", t / bt if (t is not None and bt) else None)
        ratio_st = r.get("ratio_stream", t / bs if (t is not None and bs) else None)
        nbytes = r.get("bytes")
        rate = nbytes / t if (nbytes and t) else None
        rv, gv = verdicts(r["engine"], r["d"], ratio, rate)
        shown_bytes = nbytes if nbytes else None
        print(f"{r['engine']:<10} {r['n']:>3} {r['d']:>8} {r['k']:>3} "
              f"{fmt_ms(t):>9} {fmt_ms(bt):>9} "
              f"{'-' if ratio is None else f'{ratio:7.2f}':>7} {fmt_ms(bs):>9} "
              f"{'-' if ratio_st is None else f'{ratio_st:7.2f}':>7} {fmt_ms(bn):>9} "
              f"{'-' if shown_bytes is None else f'{shown_bytes / 1e6:9.3f}':>9} "
              f"{fmt_rate(shown_bytes, t):>6} {fmt_rate(bb, bt):>8}  "
              f"{rv:<10} {gv:<9} {r.get('note', '')}")


# --------------------------------------------------------------------- main


def part_rounds(rows, bare):
    for d in SIZES:
        for n in N_WORKERS:
            k = EPOCHS[d]
            if elapsed() > PART1_DEADLINE:
                for eng in ("inprocess", "loky", "loky+ND"):
                    rows.append(dict(engine=eng, n=n, d=d, k=k,
                                     note="skipped: time budget"))
                log(f"d={d} n={n}: skipped (time budget)")
                continue
            X, y = synthetic(d, n)
            for eng, n_jobs, patch in (("inprocess", None, False), ("loky+ND", 2, True)):
                if patch:
                    with worker_nodelay():
                        t, nbytes = fit_rounds(X, y, n, n_jobs, k)
                else:
                    t, nbytes = fit_rounds(X, y, n, n_jobs, k)
                rows.append(dict(engine=eng, n=n, d=d, k=k, t=t, bytes=nbytes))
                log(f"d={d} n={n} {eng}: {t * 1e3:.3f} ms/round")
            # The machine's speed drifts by tens of percent within minutes: the
            # engine and the pings take turns, and each repeat gives a ratio.
            loky, plain, stream = [], [], []
            for _ in range(REPEATS[d]):
                t, nbytes = fit_rounds(X, y, n, 2, k)
                t_b, moved, cnt = bare_ping(d, n)
                t_s, _, cnt_s = bare_ping(d, n, stream=True)
                loky.append(t)
                plain.append(t_b)
                stream.append(t_s)
                log(f"d={d} n={n} loky: {t * 1e3:.3f} ms/round; bare: "
                    f"{t_b * 1e3:.3f} ms ({cnt} rounds), as the engine moves "
                    f"frames: {t_s * 1e3:.3f} ms ({cnt_s} rounds)")
            loky, plain, stream = map(np.array, (loky, plain, stream))
            rows.insert(len(rows) - 1, dict(
                engine="loky", n=n, d=d, k=k, t=float(np.median(loky)), bytes=nbytes,
                ratio=float(np.median(loky / plain)),
                ratio_stream=float(np.median(loky / stream))))
            t_n, _, cnt_n = bare_ping(d, n, client_nodelay=False)
            bare[(n, d)] = dict(t=float(np.median(plain)), bytes=moved, t_nagle=t_n,
                                t_stream=float(np.median(stream)))
            log(f"d={d} n={n} client Nagle on: {t_n * 1e3:.3f} ms ({cnt_n} rounds)")


def part_dask(rows):
    import joblib
    from distributed import Client, LocalCluster
    if elapsed() > PART1_DEADLINE:
        for d in SIZES:
            for n in N_WORKERS:
                for eng in ("dask", "dask+ND"):
                    rows.append(dict(engine=eng, n=n, d=d, k=EPOCHS[d],
                                     note="skipped: time budget"))
        log("dask: skipped (time budget)")
        return
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    try:
        log(f"dask cluster up: {len(client.scheduler_info()['workers'])} workers")
        with joblib.parallel_config(backend="dask"):
            X, y = synthetic(100, 2)
            fit_rounds(X, y, 2, 2, 3)  # warm-up: imports, numba cache in the workers
            log("dask warm-up done")
            for d in SIZES:
                for n in N_WORKERS:
                    k = EPOCHS[d]
                    if elapsed() > PART1_DEADLINE:
                        for eng in ("dask", "dask+ND"):
                            rows.append(dict(engine=eng, n=n, d=d, k=k,
                                             note="skipped: time budget"))
                        log(f"dask d={d} n={n}: skipped (time budget)")
                        continue
                    X, y = synthetic(d, n)
                    for eng, patch in (("dask", False), ("dask+ND", True)):
                        if patch:
                            with worker_nodelay():
                                t, nbytes = fit_rounds(X, y, n, 2, k)
                        else:
                            t, nbytes = fit_rounds(X, y, n, 2, k)
                        rows.append(dict(engine=eng, n=n, d=d, k=k, t=t, bytes=nbytes))
                        log(f"d={d} n={n} {eng}: {t * 1e3:.3f} ms/round")
    finally:
        client.close()
        cluster.close()


def datasets_dir():
    return shared_datasets_dir(Path(__file__).resolve().parents[1])


def part_a9a():
    from sklearn.datasets import load_svmlight_file

    from sklearn_dsparse import DistributedSparseLogisticRegression

    path = datasets_dir() / "a9a.bz2"
    X, y = load_svmlight_file(str(path), n_features=123, zero_based=False)

    def fit(n_jobs, max_iter=20):
        est = DistributedSparseLogisticRegression(
            n_workers=16, max_iter=max_iter, tol=0, random_state=0, n_jobs=n_jobs)
        t0 = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - t0, est

    out = {}
    # In-process and the diagnostic loky+ND first (cheap), interleaved.
    fit(None, 2)
    with worker_nodelay():
        fit(2, 1)
    walls = {"inprocess": [], "loky+ND": []}
    for _ in range(3):
        walls["inprocess"].append(fit(None)[0])
        with worker_nodelay():
            walls["loky+ND"].append(fit(2)[0])
    for name, w in walls.items():
        out[name] = (statistics.median(w), len(w), "")
        log(f"a9a {name}: " + ", ".join(f"{x:.2f}" for x in w) + " s")
    # loky as shipped: warm-up of one epoch, then as many whole fits as fit.
    wall1, est1 = fit(2, 1)
    epoch = float(np.diff(est1.history_["seconds"])[0])
    predicted = wall1 + 19 * epoch
    log(f"a9a loky warm-up (1 epoch, {est1.communication_['rounds']} rounds): "
        f"{wall1:.2f} s; predicted whole fit {predicted:.1f} s")
    w = []
    while len(w) < 3 and elapsed() + predicted * 1.05 < BUDGET:
        w.append(fit(2)[0])
        log(f"a9a loky fit {len(w)}: {w[-1]:.2f} s")
    if w:
        out["loky"] = (statistics.median(w), len(w),
                       "" if len(w) == 3 else f"only {len(w)} fit(s) in the time budget")
    else:
        out["loky"] = (predicted, 0, "EXTRAPOLATED from the 1-epoch warm-up: "
                       "no whole fit fits in the time budget")
    return out, X.shape


def main():
    warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 on purpose
    print(f"command: {COMMAND}")
    print(f"load average at start (1/5/15 min): {loadavg()}")
    import dask
    import distributed
    import joblib
    import numba
    import scipy
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}; python "
          f"{platform.python_version()}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}, numba {numba.__version__}, joblib "
          f"{joblib.__version__}, dask {dask.__version__}, distributed "
          f"{distributed.__version__}")
    print(f"synthetic data: rows = max(4 n, 256), {NNZ_PER_ROW} nnz/row, binary "
          f"labels; solver='gd', step_size={STEP}, tol=0, n_blocks/tau auto "
          f"(m = min(d+1, n), tau = 1), control variates on; k epochs = k rounds")
    print()

    # Warm-ups: numba's cache in this process, loky's workers (spawn + imports).
    X, y = synthetic(100, 2)
    fit_rounds(X, y, 2, None, 3)
    fit_rounds(X, y, 2, 2, 3)
    log("warm-up done (in-process, loky)")

    rows, bare = [], {}
    part_rounds(rows, bare)
    part_dask(rows)
    a9a, a9a_shape = part_a9a()

    print()
    print("=" * 100)
    print(f"command: {COMMAND}")
    print("ONE ROUND (median over epochs 2..k of diff(history_['seconds']); "
          "gd: 1 round per epoch)")
    print("  bare ms   = bare ping, same frames, TCP_NODELAY both ends, one "
          "send_bytes/recv_bytes per frame; stream = the same frames moved as "
          "the engine moves them (one write per burst, buffered reads); "
          "bareNagle = bare ping with TCP_NODELAY on the master only "
          "(what forgetting it on one end costs)")
    print(f"  loky rows = median of {REPEATS} fits (by d), each followed by the "
          f"two pings; ratio = median of the per-repeat ratios")
    print("  +ND rows  = regression check: TCP_NODELAY set once more on the "
          "worker side; must match the plain rows; targets shown in ()")
    print("  MB/round  = engine's measured wire bytes (payload + frame "
          "prefixes, up + down) per round; GB/s = MB/round / round time")
    print()
    print_table(rows, bare)
    print()
    print(f"a9a {a9a_shape}, DistributedSparseLogisticRegression(n_workers=16, "
          "max_iter=20, tol=0, random_state=0) (saga), whole fit wall time, "
          "after a warm-up fit of each:")
    base = a9a["inprocess"][0]
    for name in ("inprocess", "loky", "loky+ND"):
        t, cnt, note = a9a[name]
        how = f"median of {cnt}" if cnt else "no fit"
        print(f"  {name:<10} {t:8.2f} s  ({how})  ratio to in-process "
              f"{t / base:8.1f}x  {note}")
    print()
    print(f"load average at end (1/5/15 min): {loadavg()}")
    print(f"total wall time: {elapsed():.1f} s")


if __name__ == "__main__":
    sys.exit(main())
