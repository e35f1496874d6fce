"""Data that lives on a Dask cluster: fit without the driver holding X.

``fit(X, y)`` with X a row-chunked ``dask.array.Array`` (dense, or with
scipy.sparse chunks) or a Dask DataFrame, and y (and ``sample_weight``) the
matching Dask collection, runs as follows when a ``distributed.Client`` is
active:

1. Each partition is validated and converted where it lies
   (``prepare_partition``: scikit-learn's ``check_X_y``, then the fit's CSR
   float64 layout; a CSR float64 chunk is kept as it is, not copied), and the
   results stay on the cluster as futures.  Only a small summary of each
   comes back to the driver (rows, columns, dtype, its targets' summary:
   classes and counts, or the number of targets, and sample weight), so bad
   input raises scikit-learn's own errors, from the partition that has it.
2. ``DaskData.shard`` lays the logical workers over the partitions without
   moving any: partitions are grouped by the Dask worker that holds them (in
   the order of the workers' addresses, then of the partitions), every
   holder gets at least one logical worker and about its share of the rows,
   and each logical worker's shard is a run of whole partitions of one
   holder, as equal as the partitions allow.
3. One task per holder runs on that worker (``run_tasks``: ``Client.submit``
   pinned there) and receives its partitions in its own process; Dask moves
   nothing through the driver.  The task builds its workers' rows from them
   (``local_rows``) and serves the fit as any worker task does.

The model is the in-memory fit, bit for bit, of the partitions concatenated
in the order of ``shard_partitions`` with the same shard boundaries (the
sums of the sample weights are added per partition: bit for bit when the
weights are integers, as without ``sample_weight``; within rounding
otherwise).
"""

import sys
import uuid

import numpy as np


def is_dask_collection(*objects):
    """True when one of ``objects`` is a Dask collection (without importing
    Dask when the caller has not)."""
    dask = sys.modules.get("dask")
    return dask is not None and any(dask.is_dask_collection(obj) for obj in objects)


def _client():
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        raise ValueError(
            "X is a Dask collection: fitting it needs an active distributed.Client "
            "(the partitions stay on the cluster's workers and the worker tasks "
            "run there). Start one, e.g. distributed.Client(LocalCluster()), or "
            "fit X.compute() in memory.") from None


def map_rows(X, rows_function, n_columns, dtype):
    """``rows_function`` (of an array of rows) on each partition of the Dask
    collection X, where it lies: a Dask array of its results for a Dask
    array (1-D when ``n_columns`` is None), a Dask Series or DataFrame with
    X's index for a DataFrame.  Nothing is computed."""
    import dask.array as da

    if isinstance(X, da.Array):
        if X.ndim == 2 and X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        if n_columns is None:
            return X.map_blocks(rows_function, dtype=dtype, drop_axis=1,
                                meta=np.empty((0,), dtype=dtype))
        return X.map_blocks(rows_function, dtype=dtype, chunks=(X.chunks[0], (n_columns,)),
                            meta=np.empty((0, 0), dtype=dtype))
    import pandas as pd

    def on_frame(frame):
        out = rows_function(frame)
        return (pd.Series(out, index=frame.index) if out.ndim == 1
                else pd.DataFrame(out, index=frame.index))

    meta = on_frame(X._meta) if len(X._meta) else (
        pd.Series(np.empty(0, dtype=dtype)) if n_columns is None
        else pd.DataFrame(np.empty((0, n_columns), dtype=dtype)))
    return X.map_partitions(on_frame, meta=meta)


# -- on the workers ---------------------------------------------------------

def prepare_partition(X, y, sample_weight, index, columns, validation):
    """One partition as the fit takes it: (X as CSR float64, y, sample
    weights), validated as ``validate_data`` validates X and y in memory."""
    from sklearn.utils import check_X_y

    from ._compat import _check_sample_weight
    from ._fit import as_csr_float64

    if columns is not None and list(X.columns) != columns:
        raise ValueError(
            f"partition {index} of X has the columns {list(X.columns)}, where X "
            f"has {columns}: every partition needs the same columns.")
    X, y = check_X_y(X, y, **validation)
    sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                         ensure_non_negative=True, copy=False)
    return as_csr_float64(X), X.dtype, y, sample_weight


def summarize_partition(prepared, summary_type):
    X, dtype, y, sample_weight = prepared
    return X.shape, dtype, summary_type(y, sample_weight)


def local_rows(shards, targets, row_scales):
    """The rows a task's workers hold, from their partitions: per worker the
    list of its partitions' CSR matrices (``X_shards``: not stacked, which
    would copy them while the cluster keeps them; ``LocalProblem`` takes
    rows in pieces), Y, c and ``shard_starts``, as ``_fit`` makes them in
    memory (c_r = s_r N_i / S_i, ``row_scales[i]`` = N_i / S_i).  A part is
    a prepared partition, or a file that ``load()`` reads and prepares here
    (``_file_data``)."""
    X_shards, pieces_Y, pieces_c, starts = [], [], [], [0]
    for parts, row_scale in zip(shards, row_scales):
        parts = [part.load() if hasattr(part, "load") else part for part in parts]
        for _, _, y, sample_weight in parts:
            Y, sample_weight = targets.encode(y, sample_weight)
            pieces_Y.append(Y)
            pieces_c.append(sample_weight * row_scale)
        starts.append(sum(len(c) for c in pieces_c))
        X_shards.append([part[0] for part in parts])
    return dict(X_shards=X_shards, Y=np.concatenate(pieces_Y),
                c=np.concatenate(pieces_c), shard_starts=np.array(starts, dtype=np.int64))


# -- on the driver ----------------------------------------------------------

def _partitions(collection, name, n_rows_chunks=None):
    """The delayed row partitions of a Dask array, DataFrame or Series."""
    import dask.array as da

    if isinstance(collection, da.Array):
        if n_rows_chunks is not None and collection.numblocks[0] != n_rows_chunks \
                and not any(np.isnan(collection.chunks[0])):
            raise ValueError(
                f"{name} has {collection.numblocks[0]} row chunks where X has "
                f"{n_rows_chunks}: chunk {name} along its rows as X is, e.g. "
                f"{name}.rechunk({{0: X.chunks[0]}}).")
        if collection.ndim == 2 and collection.numblocks[1] > 1:
            # Whole rows in each partition; the move stays on the cluster.
            collection = collection.rechunk({1: -1})
        parts = collection.to_delayed()
        return list(parts[:, 0] if collection.ndim == 2 else parts)
    if hasattr(collection, "to_delayed"):  # DataFrame, Series
        return list(collection.to_delayed())
    raise TypeError(f"{name} is a {type(collection).__name__}: give a Dask array, "
                    "DataFrame or Series with the same partitions as X.")


class RemoteData:
    """Data that lives elsewhere than in the driver, in pieces (partitions,
    files) that the worker tasks hold or read, described on the driver by
    their summaries.  A subclass surveys its pieces (``_survey``) and lays the
    logical workers over them (``shard``); ``places_tasks``: whether it runs
    the tasks itself (``run_tasks``, where its pieces lie) or the active
    joblib backend runs them, each given ``parts_of`` its workers."""

    places_tasks = False

    def _survey(self, reports):
        """Record the pieces' ``summarize_partition`` reports; check widths first."""
        self.rows = np.array([shape[0] for shape, _, _ in reports])
        self.n_samples = int(self.rows.sum())
        self.n_features = int(reports[0][0][1])
        self.dtype = np.result_type(*[dtype for _, dtype, _ in reports])
        self.summaries = [summary for _, _, summary in reports]
        summary = self.summaries[0]
        for other in self.summaries[1:]:
            summary = summary.merge(other)
        self.summary = summary

    def _set_shards(self, targets, shard_partitions):
        """Each logical worker's shard is the run of pieces ``shard_partitions[i]``."""
        self.targets = targets
        self.shard_partitions = shard_partitions
        rows = np.array([self.rows[parts].sum() for parts in self.shard_partitions])
        self.shard_starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self.shard_weight = np.array([
            sum(targets.weight_of(self.summaries[j]) for j in parts)
            for parts in self.shard_partitions])
        if not self.shard_weight.sum() > 0:
            raise ValueError("sample_weight sums to zero: at least one sample "
                             "must have a positive weight.")
        return self

    @property
    def shape(self):
        return self.n_samples, self.n_features

    @property
    def total_weight(self):
        return float(self.shard_weight.sum())

    def parts_of(self, workers):
        """The pieces (``self.parts``) of the logical workers ``workers``,
        worker by worker: what a task hosting them is given."""
        return [[self.parts[j] for j in self.shard_partitions[i]] for i in workers]

    def release(self):
        """Let go of what the pieces hold on the cluster."""
        self.parts = []


class DaskData(RemoteData):
    """X, y and the sample weights in the partitions of Dask collections,
    validated and prepared where they lie (see the module docstring)."""

    places_tasks = True

    def __init__(self, estimator, X, y, sample_weight, validation, summary_type):
        from dask import delayed

        self.client = _client()
        x_parts = _partitions(X, "X")
        n_parts = len(x_parts)
        y_parts = _partitions(y, "y", n_parts)
        w_parts = [None] * n_parts if sample_weight is None else \
            _partitions(sample_weight, "sample_weight", n_parts)
        for name, parts in (("y", y_parts), ("sample_weight", w_parts)):
            if len(parts) != n_parts:
                raise ValueError(
                    f"{name} has {len(parts)} partitions where X has {n_parts}: give "
                    f"{name} the same partitions as X (the same row chunks, or the "
                    "same divisions).")
        columns = list(X.columns) if hasattr(X, "columns") else None
        # An empty frame (or array) with X's columns and dtypes, for feature names.
        self.meta = getattr(X, "_meta", None)
        validation = dict(validation, estimator=type(estimator).__name__)
        prepare = delayed(prepare_partition, pure=False)
        # The prepared partitions, as futures: they stay where they are made.
        self.parts = self.client.compute(
            [prepare(xp, yp, wp, j, columns, validation)
             for j, (xp, yp, wp) in enumerate(zip(x_parts, y_parts, w_parts))])
        reports = self.client.gather(self.client.map(
            summarize_partition, self.parts, [summary_type] * n_parts, pure=False))
        shapes = np.array([shape for shape, _, _ in reports])
        if np.any(shapes[:, 1] != shapes[0, 1]):
            j = int(np.argmax(shapes[:, 1] != shapes[0, 1]))
            raise ValueError(
                f"partition {j} of X has {shapes[j, 1]} columns where partition 0 "
                f"has {shapes[0, 1]}: every partition needs the same columns.")
        self._survey(reports)
        who_has = self.client.who_has(self.parts)
        self.holders = [sorted(who_has[f.key])[0] for f in self.parts]

    def shard(self, targets, n_workers):
        """Lay ``n_workers`` logical workers over the partitions (module
        docstring, 2.) and sum the shards' encoded sample weights."""
        hosts = sorted(set(self.holders))
        by_host = [[j for j in range(len(self.holders)) if self.holders[j] == h]
                   for h in hosts]
        if not len(hosts) <= n_workers <= len(self.holders):
            raise ValueError(
                f"n_workers={n_workers} does not fit the data's {len(self.holders)} "
                f"partitions on {len(hosts)} Dask workers: each logical worker's "
                "shard is made of whole partitions of one Dask worker, and every "
                "Dask worker holding partitions hosts at least one logical worker. "
                f"Set {len(hosts)} <= n_workers <= {len(self.holders)}, or "
                "repartition X (and y).")
        counts = _allot(np.array([self.rows[parts].sum() for parts in by_host]),
                        np.array([len(parts) for parts in by_host]), n_workers)
        shard_partitions, self.groups, self.task_hosts = [], [], []
        for host, parts, count in zip(hosts, by_host, counts):
            first = len(shard_partitions)
            shard_partitions += _split_runs(parts, self.rows[parts], count)
            self.groups.append(np.arange(first, first + count))
            self.task_hosts.append(host)
        return self._set_shards(targets, shard_partitions)

    def run_tasks(self, task, address, key, idle_timeout):
        """Run ``task(address, key, idle_timeout, (index, shards))`` on each
        holder, ``shards`` its workers' prepared partitions (moved by no one:
        they are on that worker), until every task ends; their results."""
        from distributed import wait

        run = uuid.uuid4().hex
        futures = [
            self.client.submit(
                task, address, key, idle_timeout, (t, self.parts_of(group)),
                workers=[host], allow_other_workers=False, pure=False,
                key=f"sklearn-dsparse-task-{run}-{t}")
            for t, (group, host) in enumerate(zip(self.groups, self.task_hosts))]
        wait(futures)
        return [future.result() for future in futures]  # raises a task's error


def _allot(rows, capacity, n_workers):
    """Logical workers per holder: at least one, at most its partitions, in
    proportion to its rows otherwise (largest remainders)."""
    counts = np.ones(len(rows), dtype=np.int64)
    for _ in range(n_workers - len(rows)):
        share = rows / (counts + 1)  # rows per worker if it got one more
        share[counts >= capacity] = -1.0
        counts[int(np.argmax(share))] += 1
    return counts


def _split_runs(parts, rows, count):
    """``count`` non-empty runs of the partitions ``parts``, each ending at the
    partition boundary nearest to an equal share of the rows."""
    ends = np.cumsum(rows)
    cuts = []
    lo = 0
    for k in range(1, count):
        target = ends[-1] * k / count
        # A cut after partition c (1 <= c): at least one partition on each side
        # of it and enough partitions left for the runs after it.
        candidates = np.arange(lo + 1, len(parts) - (count - k) + 1)
        c = int(candidates[np.argmin(np.abs(ends[candidates - 1] - target))])
        cuts.append(c)
        lo = c
    bounds = [0] + cuts + [len(parts)]
    return [list(parts[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
