"""Data that lives on a Dask cluster: the driver's and the workers' memory
during a fit of a Dask array of CSR chunks, and its start-up time against the
in-memory path.

    python benchmarks/bench_dask_data.py --gigabytes 1

A LocalCluster of two worker processes generates a sparse logistic problem
(``--features`` columns, ``--nnz`` non-zeros per row, labels from a fixed
model plus noise; every chunk from its own seed) and persists it: the driver
never sees a row.  ``DistributedSparseLogisticRegression(n_workers=8)`` then
fits it (``solver="newton"``, the default).  Printed:

- the driver's peak RSS during the fit above its RSS before, against the
  data's CSR bytes (target: at most 10% of them plus the model);
- each worker's peak RSS during the fit above its RSS before it held any
  data, against the CSR bytes of its shards (target: within 1.5x of them plus
  the per-worker state), and what the fit added to the partitions it held,
  in bytes per row of its shards: the per-worker state (per-row arrays of 8
  bytes a row each: targets, row weights, margins, curvatures, and the
  rounds' temporaries) against a row's CSR bytes (``--nnz`` x 12 + 8);
- the time to the first round (``history_["seconds"][0]`` plus the
  validation of the partitions) and of the whole fit, and the same for the
  in-memory fit of the same rows with ``n_jobs=2`` (loky), when the data is
  small enough (``--compare``);
- that the model equals, bit for bit, the in-memory fit of the same
  generator at a small size (4 partitions), in the order of
  ``shard_partitions_``.
"""

import argparse
import os
import threading
import time

import numpy as np
import scipy.sparse as sp

from sklearn_dsparse import DistributedSparseLogisticRegression

BYTES_PER_NNZ = 12  # float64 value + int32 column index


def make_chunk(block_id, rows, n_features, nnz, seed):
    """Rows of one partition: CSR float64, and their labels."""
    rng = np.random.default_rng([seed, block_id])
    indices = np.sort(rng.random((rows, n_features)).argpartition(nnz, axis=1)[:, :nnz],
                      axis=1) if n_features <= 64 else np.sort(
        rng.integers(0, n_features, size=(rows, nnz)), axis=1)
    data = rng.standard_normal((rows, nnz))
    indptr = np.arange(0, rows * nnz + 1, nnz, dtype=np.int64)
    X = sp.csr_matrix((data.ravel(), indices.ravel().astype(np.int32), indptr),
                      shape=(rows, n_features))
    X.sum_duplicates()
    w = np.random.default_rng(seed).standard_normal(n_features)
    y = (X @ w + rng.standard_normal(rows) > 0).astype(np.int64)
    return X, y


def dask_problem(n_parts, rows, n_features, nnz, seed):
    import dask
    import dask.array as da

    chunks = [dask.delayed(make_chunk, pure=True)(j, rows, n_features, nnz, seed)
              for j in range(n_parts)]
    meta = sp.csr_matrix((0, n_features))
    X = da.concatenate([da.from_delayed(c[0], shape=(rows, n_features), dtype=np.float64,
                                        meta=meta) for c in chunks])
    y = da.concatenate([da.from_delayed(c[1], shape=(rows,), dtype=np.int64)
                        for c in chunks])
    return X, y


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRSS:
    """The peak RSS of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.before = rss()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def added(self):
        return self.peak - self.before


def start_worker_sampling(dask_worker):
    sampler = PeakRSS()
    sampler.__enter__()
    dask_worker._dsparse_rss = sampler
    return sampler.before


def stop_worker_sampling(dask_worker):
    sampler = dask_worker._dsparse_rss
    sampler.__exit__(None, None, None)
    return sampler.before, sampler.peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0,
                        help="CSR bytes of the generated data")
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--nnz", type=int, default=10, help="non-zeros per row")
    parser.add_argument("--parts", type=int, default=16, help="partitions")
    parser.add_argument("--n-workers", type=int, default=8, help="logical workers")
    parser.add_argument("--compare", action="store_true",
                        help="also fit the same rows in memory (loky, n_jobs=2)")
    args = parser.parse_args()

    from distributed import Client, LocalCluster, futures_of, wait

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None, memory_limit=0)
    client = Client(cluster)
    seed = 0
    # What a worker process holds before any data: Python, the libraries.
    client.run(lambda: __import__("sklearn_dsparse.engines.rounds"))
    baseline = client.run(rss)

    # Bitwise: the same generator, 4 small partitions, against memory.
    X, y = dask_problem(4, 2000, args.features, args.nnz, seed)
    X, y = X.persist(), y.persist()
    est = DistributedSparseLogisticRegression(n_workers=4, random_state=0).fit(X, y)
    parts = [make_chunk(j, 2000, args.features, args.nnz, seed)
             for parts in est.shard_partitions_ for j in parts]
    ref = DistributedSparseLogisticRegression(n_workers=4, random_state=0).fit(
        sp.vstack([p[0] for p in parts]).tocsr(), np.concatenate([p[1] for p in parts]))
    equal = np.array_equal(est.coef_, ref.coef_) and np.array_equal(est.intercept_,
                                                                     ref.intercept_)
    print(f"small problem (8000 rows): coef_ equal to the in-memory fit bit for bit: "
          f"{equal}")

    row_bytes = args.nnz * BYTES_PER_NNZ + 8
    rows = int(args.gigabytes * 2**30 / row_bytes / args.parts)
    X, y = dask_problem(args.parts, rows, args.features, args.nnz, seed)
    X, y = X.persist(), y.persist()
    wait([X, y])
    n_rows = rows * args.parts
    data_bytes = n_rows * row_bytes
    print(f"data: {n_rows} rows x {args.features}, {args.nnz} non-zeros a row, "
          f"{args.parts} partitions on 2 Dask workers: {data_bytes / 2**30:.2f} GiB "
          "of CSR")

    client.run(start_worker_sampling)
    est = DistributedSparseLogisticRegression(n_workers=args.n_workers, random_state=0)
    with PeakRSS() as driver:
        started = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - started
    workers = client.run(stop_worker_sampling)
    model_bytes = est.coef_.nbytes
    print(f"fit: {seconds:.1f} s, {est.n_iter_[0]} iterations, "
          f"{est.communication_['rounds']} rounds; first round after "
          f"{seconds - est.history_['seconds'][-1] + est.history_['seconds'][0]:.1f} s")
    print(f"driver: peak RSS +{driver.added / 2**20:.1f} MiB during the fit = "
          f"{driver.added / data_bytes:.4f}x the data (target <= 0.1x + the model, "
          f"{model_bytes} B)")
    held = {}
    for holders in client.who_has(futures_of(X)).values():
        held[holders[0]] = held.get(holders[0], 0) + rows * row_bytes
    for address, (before, peak) in sorted(workers.items()):
        base = baseline[address]
        print(f"worker {address}: RSS {base / 2**30:.2f} GiB with no data, "
              f"+{(before - base) / 2**30:.2f} GiB holding its partitions "
              f"({held[address] / 2**30:.2f} GiB of CSR), +{(peak - base) / 2**30:.2f} "
              f"GiB at the fit's peak: {(peak - base) / held[address]:.2f}x its "
              "shards' CSR bytes (target <= 1.5x + state); the fit added "
              f"{(peak - before) / (held[address] / row_bytes):.0f} B a row "
              f"(a row's CSR: {row_bytes} B)")

    if args.compare:
        Xm = X.compute()
        ym = y.compute()
        from joblib import parallel_config
        with parallel_config(backend="loky"):
            memory = DistributedSparseLogisticRegression(
                n_workers=args.n_workers, random_state=0, n_jobs=2)
            with PeakRSS() as driver_memory:
                started = time.perf_counter()
                memory.fit(Xm, ym)
                seconds_memory = time.perf_counter() - started
        print(f"in memory (loky, n_jobs=2): {seconds_memory:.1f} s, first round after "
              f"{seconds_memory - memory.history_['seconds'][-1] + memory.history_['seconds'][0]:.1f} s; "
              f"driver +{driver_memory.added / 2**20:.0f} MiB beside X itself "
              f"({Xm.data.nbytes + Xm.indices.nbytes + Xm.indptr.nbytes >> 20} MiB)")
    client.close()
    cluster.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:distributed")
    main()
