"""Data that the worker tasks read themselves, from files on shared storage.

``fit(FileShards(paths, format=...))`` runs as follows:

1. A survey task per file, on the active joblib backend (loky, Dask, Ray,
   Spark; in the driver with ``n_jobs=None``), reads the file, validates it
   as ``fit`` validates X and y in memory (``prepare_partition``:
   scikit-learn's ``check_X_y``) and returns only its summary (rows, columns,
   dtype, its targets' summary); an error names the file.
2. ``FileData.shard`` gives each logical worker a run of whole files, in the
   order of the paths, each run ending at the file boundary nearest an equal
   share of the rows (``_split_runs``).
3. The engine launches ``min(n_jobs, n_workers)`` tasks on the same backend,
   each hosting a contiguous group of logical workers; each task receives the
   names of its workers' files (``FilePart``), reads them again and builds
   its rows (``_dask_data.local_rows``).  No row passes through the driver.

The model is the in-memory fit, bit for bit, of the files' rows
concatenated in the order of the paths, with the shard boundaries of
``shard_partitions_`` (an even split of the rows when the files are equal).
"""

import os
from numbers import Integral

import numpy as np
import scipy.sparse as sp

from ._dask_data import RemoteData, _split_runs, prepare_partition, summarize_partition

FORMATS = ("svmlight", "npz", "parquet")


class FileShards:
    """Training data in files that the worker tasks read themselves.

    Give it to an estimator's ``fit`` as X, with y left None (the targets are
    in the files): ``est.fit(FileShards(paths, format="npz"))``.  Each file
    is read where the tasks run (``n_jobs`` tasks of the active joblib
    backend: loky, or a Dask, Ray or Spark cluster), so the paths must name
    the same files on every machine of the backend: shared storage.  Each
    logical worker's shard is a run of whole files, in the order given.
    Only ``solver="newton"`` (the default) fits such data.  See
    docs/engines.md, "Data read by the workers".

    Parameters
    ----------
    paths : sequence of str or path-like
        The files, one piece of the rows each, in the order of the rows.

    format : {"svmlight", "npz", "parquet"}, default="svmlight"
        How each file holds X and y:

        - "svmlight": ``sklearn.datasets.load_svmlight_file``'s format, y the
          labels (``dump_svmlight_file`` writes it).
        - "npz": ``numpy.savez`` of a key ``y`` (shape (n_rows,) or
          (n_rows, n_targets)) and either ``X``, a dense array, or X as
          ``scipy.sparse.save_npz`` stores it (keys ``format``, ``shape``,
          ``data``, ``indices``, ``indptr``, ...): e.g. ``np.savez(path,
          y=y, format="csr", shape=X.shape, data=X.data, indices=X.indices,
          indptr=X.indptr)``.  Nothing is unpickled.
        - "parquet": a table whose ``target`` column(s) are y and whose other
          columns are X (their names become ``feature_names_in_``); read by
          ``pandas.read_parquet`` (pyarrow).

    n_features : int, default=None
        svmlight only: the number of features, so that every file gives X the
        same width (a file without the last features is padded).  None: one
        more than the largest feature index of all the files (the survey
        finds it).  For the other formats the width is in the files, which
        must all have the same.

    zero_based : bool or "auto", default="auto"
        svmlight only: whether the feature indices start at 0.  "auto", as
        ``sklearn.datasets.load_svmlight_files``: one-based unless some file
        has an index 0, decided over all the files together.

    target : str or list of str, default=None
        parquet only, and required: the column(s) holding y.

    See Also
    --------
    sklearn.datasets.load_svmlight_files : The same files read in memory.

    Examples
    --------
    >>> from sklearn_dsparse import FileShards, DistributedSparseLogisticRegression
    >>> shards = FileShards([f"/shared/train-{i}.svm" for i in range(8)])
    >>> clf = DistributedSparseLogisticRegression(n_workers=8, n_jobs=4)
    >>> clf.fit(shards)  # doctest: +SKIP
    """

    def __init__(self, paths, *, format="svmlight", n_features=None, zero_based="auto",
                 target=None):
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise TypeError(
                f"paths is one path, {paths!r}: give a list of paths, one per file "
                f"(e.g. [{paths!r}]).")
        self.paths = [os.fspath(path) for path in paths]
        if not self.paths:
            raise ValueError("paths is empty: give at least one file.")
        if format not in FORMATS:
            raise ValueError(f"format={format!r} is not one of {FORMATS}.")
        svmlight_only = {"n_features": n_features is not None,
                         "zero_based": zero_based != "auto"}
        for name, given in svmlight_only.items():
            if given and format != "svmlight":
                raise ValueError(
                    f"{name} applies to format='svmlight'; a {format} file holds "
                    f"its own width. Leave {name} at its default.")
        if n_features is not None and not (isinstance(n_features, Integral)
                                           and n_features >= 1):
            raise ValueError(f"n_features={n_features!r}: give a positive integer, "
                             "or None for the widest file's.")
        if zero_based not in (True, False, "auto"):
            raise ValueError(f"zero_based={zero_based!r}: give True, False or 'auto'.")
        if (format == "parquet") != (target is not None):
            raise ValueError(
                "target names y's column(s) in a Parquet file: give it with "
                "format='parquet', and only then." if format == "parquet" else
                f"target={target!r} applies to format='parquet'; a {format} file "
                "holds y under its own name. Leave target=None.")
        self.format = format
        self.n_features = n_features
        self.zero_based = zero_based
        self.target = target

    def __repr__(self):
        paths = self.paths if len(self.paths) <= 3 else \
            self.paths[:2] + [f"... ({len(self.paths)} files)"]
        options = "".join(f", {name}={getattr(self, name)!r}" for name, default in
                          (("n_features", None), ("zero_based", "auto"),
                           ("target", None)) if getattr(self, name) != default)
        return f"FileShards({paths}, format={self.format!r}{options})"


# -- where the tasks run ----------------------------------------------------

def read_file(path, format, target=None, zero_based=True, n_features=None):
    """X, y and X's column names (None but for Parquet) of one file, as stored."""
    try:
        if format == "svmlight":
            from sklearn.datasets import load_svmlight_file

            X, y = load_svmlight_file(path, n_features=n_features, zero_based=zero_based)
            return X, y, None
        if format == "npz":
            with np.load(path, allow_pickle=False) as stored:
                keys = set(stored.files)
                if "y" not in keys or not ({"X", "format"} & keys):
                    raise ValueError(
                        f"the file {path!r} has the keys {sorted(keys)}: an npz file "
                        "of FileShards holds y and X, either dense (key X) or as "
                        "scipy.sparse.save_npz stores it (format, shape, data, "
                        "indices, indptr).")
                y = stored["y"]
                X = stored["X"] if "X" in keys else None
            return (sp.load_npz(path) if X is None else X), y, None
        import pandas as pd

        frame = pd.read_parquet(path)
        targets = [target] if isinstance(target, str) else list(target)
        missing = [t for t in targets if t not in frame.columns]
        if missing:
            raise ValueError(f"the file {path!r} has no column {missing[0]!r} (target): "
                             f"its columns are {list(frame.columns)}.")
        y = frame[target].to_numpy()
        X = frame.drop(columns=targets)
        return X, y, list(X.columns)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{path!r}: no such file where the task runs ({exc.strerror}). The paths "
            "of FileShards must name the same files on every machine of the joblib "
            "backend (shared storage).") from exc


def _prepare(path, X, y, validation):
    """``prepare_partition``; its error (the in-memory one) names the file."""
    try:
        return prepare_partition(X, y, None, None, None, validation)
    except ValueError as exc:
        raise ValueError(f"{exc} (in the file {path!r})") from exc


def survey_file(path, read, validation, summary_type):
    """One file's report: ``summarize_partition``'s, its column names, and
    its smallest feature index (svmlight, read zero-based; None if none)."""
    X, y, columns = read_file(path, **read)
    prepared = _prepare(path, X, y, validation)
    try:
        report = summarize_partition(prepared, summary_type)
    except ValueError as exc:  # y's classes (check_classification_targets)
        raise ValueError(f"{exc} (in the file {path!r})") from exc
    low = int(X.indices.min()) if read["format"] == "svmlight" and X.nnz else None
    return report, columns, low


class FilePart:
    """A file as a fit task reads it: ``load()`` returns it prepared, as
    ``prepare_partition`` does (what ``local_rows`` takes)."""

    def __init__(self, path, read, validation):
        self.path, self.read, self.validation = path, read, validation

    def load(self):
        X, y, _ = read_file(self.path, **self.read)
        return _prepare(self.path, X, y, self.validation)


# -- on the driver ----------------------------------------------------------

class FileData(RemoteData):
    """The files of a ``FileShards``, surveyed where the tasks run (module
    docstring, 1.)."""

    def __init__(self, source, n_jobs, validation, summary_type):
        from joblib import Parallel, delayed

        self.paths = source.paths
        read = dict(format=source.format)
        if source.format == "parquet":
            read["target"] = source.target
        results = Parallel(n_jobs=n_jobs)(
            delayed(survey_file)(path, read, validation, summary_type)
            for path in self.paths)
        reports = [report for report, _, _ in results]
        widths = [shape[1] for shape, _, _ in reports]
        if source.format == "svmlight":
            read.update(self._svmlight_width(source, widths, [low for *_, low in results]))
            widths = [read["n_features"]] * len(widths)
            reports = [((shape[0], read["n_features"]),) + tuple(rest)
                       for shape, *rest in reports]
        self._check_columns(widths, [columns for _, columns, _ in results])
        self._survey(reports)
        columns = results[0][1]
        self.meta = None
        if columns is not None:
            import pandas as pd

            # An empty frame with X's columns, for feature names.
            self.meta = pd.DataFrame(columns=columns)
        self.parts = [FilePart(path, read, validation) for path in self.paths]

    def _svmlight_width(self, source, widths, lows):
        """zero_based and n_features for every file, from their survey (read
        zero-based): as ``load_svmlight_files`` decides them together."""
        zero_based = source.zero_based
        if zero_based == "auto":
            zero_based = not all(low is not None and low > 0 for low in lows)
        shift = 0 if zero_based else 1
        if not zero_based and any(low == 0 for low in lows):
            j = lows.index(0)
            raise ValueError(
                f"the file {self.paths[j]!r} has the feature index 0, but "
                "zero_based=False: set zero_based=True (or 'auto').")
        widest = max(widths) - shift
        if source.n_features is not None and widest > source.n_features:
            j = int(np.argmax(widths))
            raise ValueError(
                f"the file {self.paths[j]!r} has {widest} features, more than "
                f"n_features={source.n_features}: set n_features >= {widest}, or "
                "None for the widest file's.")
        n_features = widest if source.n_features is None else source.n_features
        return dict(zero_based=zero_based, n_features=n_features)

    def _check_columns(self, widths, columns):
        for j in range(1, len(widths)):
            if widths[j] != widths[0] or columns[j] != columns[0]:
                what = (f"the columns {columns[j]}" if columns[j] is not None
                        else f"{widths[j]} columns")
                first = (columns[0] if columns[0] is not None
                         else f"{widths[0]} columns")
                raise ValueError(
                    f"the file {self.paths[j]!r} has {what} where {self.paths[0]!r} "
                    f"has {first}: every file needs the same features, in the same "
                    "order. Write the files with X of the same width.")

    def shard(self, targets, n_workers):
        """Lay ``n_workers`` logical workers over the files (module docstring, 2.)."""
        n_files = len(self.paths)
        if n_workers > n_files:
            raise ValueError(
                f"n_workers={n_workers} is more than the {n_files} files: each "
                "logical worker's shard is made of whole files. Set n_workers <= "
                f"{n_files}, or split the data into more files.")
        return self._set_shards(targets, _split_runs(list(range(n_files)), self.rows,
                                                     n_workers))
