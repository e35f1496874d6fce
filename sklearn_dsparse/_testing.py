"""Where the tests, benchmarks and examples find the svmlight datasets, and
the synthetic data they share."""

import hashlib
import os
from pathlib import Path

import numpy as np


def datasets_dir(checkout):
    """The datasets folder for a checkout of this repository.

    ``$DSPARSE_DATASETS`` if set, else the ``datasets`` folder the repository
    carries (``<checkout>/datasets``; see its README for sources and licences).
    """
    env = os.environ.get("DSPARSE_DATASETS")
    if env:
        return Path(env)
    return Path(checkout).resolve() / "datasets"


def sha256(path):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def separable_binary(n_samples=400, n_features=10, margin=0.1, seed=0):
    """Linearly separable binary data: standard normal rows labelled by the
    side of a random hyperplane (offset 0.3), those within ``margin`` of it
    dropped (``solver="asgd"``'s tests and study)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4 * n_samples, n_features))
    normal = rng.standard_normal(n_features)
    side = X @ normal / np.linalg.norm(normal) + 0.3
    keep = np.abs(side) > margin
    return X[keep][:n_samples], (side[keep][:n_samples] > 0).astype(int)
