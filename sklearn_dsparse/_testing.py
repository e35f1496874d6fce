"""Where the tests, benchmarks and examples find the svmlight datasets."""

import hashlib
import os
from pathlib import Path


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
