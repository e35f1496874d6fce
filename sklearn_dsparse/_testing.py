"""Where the tests, benchmarks and examples find the shared svmlight datasets."""

import os
import subprocess
from pathlib import Path


def datasets_dir(checkout):
    """The datasets folder for a checkout of this repository.

    ``$DSPARSE_DATASETS`` if set; else ``shared/datasets`` beside the checkout;
    else beside the repository it was cloned from, when that is a local path
    (a fresh clone made for CI, anywhere on the same machine).
    """
    env = os.environ.get("DSPARSE_DATASETS")
    if env:
        return Path(env)
    checkout = Path(checkout).resolve()
    beside = checkout.parent / "shared" / "datasets"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(
            ["git", "-C", str(checkout), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, check=False).stdout.strip()
    except OSError:  # no git
        origin = ""
    if origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / "shared" / "datasets"
        if cloned_from.is_dir():
            return cloned_from
    return beside  # missing: the caller says so, naming DSPARSE_DATASETS
