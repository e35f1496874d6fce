"""Docstring pieces shared by the estimators (written once, formatted in)."""

SHARED_PARAMETERS = """\
    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept.

    solver : {"newton", "saga", "sgd", "gd", "asgd"}, default="newton"
        "newton" (the default: tens of rounds to the exact optimum): each
        iteration, one round sums the workers' objectives and gradients,
        and one round averages their local Newton directions for a vector
        of the master's, which runs L-BFGS (OWL-QN with an L1 penalty) with
        that average as its initial inverse Hessian and a line search
        (``sklearn_dsparse.newton``; GIANT with the master's memory).  The
        others take one master step per round from the estimate each worker
        computes on its shard (the paper's algorithms, many more rounds):
        "saga", the minibatch SAGA estimate (with control variates it
        reaches the exact optimum); "sgd", a minibatch stochastic gradient
        (reaches a neighbourhood of the optimum whose size shrinks with the
        step); "gd", the full local gradient (one round per epoch);
        "asgd", sgd's estimate at the look-ahead point of Nesterov-type
        sequences (the paper's IASGD, after Vaswani, Bach & Schmidt), for
        models that interpolate: squared loss with ``y = X w + b`` exactly
        (``alpha=0`` or small, more or fewer rows than features), momentum
        and step set from the exact (restricted) strong convexity,
        smoothness and strong growth constant of the round's estimate; or
        binary logistic regression on separable data (``C=np.inf`` or
        large), with the convex schedule and an estimated growth constant.
        It takes no L1 penalty, no control variates and no shared masks,
        and it gains most with large ``batch_size`` (docs/method.md,
        "Accelerated SGD").

    n_workers : int, default=4
        Number of logical workers; the rows are split into this many
        contiguous, near-equal shards, in the order given.  Must not exceed
        n_samples.

    n_blocks : int or "auto", default="auto"
        Number m of contiguous parameter blocks (a block holds the same
        features for every class or target; the intercept is the last
        parameter row).  "auto" is ``min(n_features + fit_intercept,
        n_workers)``.

    blocks_per_worker : int or "auto", default="auto"
        Number tau of blocks each worker sends per round; "auto" is
        ``max(1, round(n_blocks / n_workers))``, which removes a fraction
        ``1 - 1 / n_workers`` of the uplink.

    sparsifier : {"auto", "independent", "bernoulli", "shared", "none"}, \
default="auto"
        "independent": each worker draws its own blocks (independent block
        sparsification); "bernoulli": each worker sends every block with
        probability ``blocks_per_worker / n_blocks``, independently of the
        others, else nothing but its 16-byte header (the paper's IBGD: the
        same variance and step as "independent", no block ids); "shared":
        all workers send the same blocks each round (parallel block
        coordinate descent); "none": dense averaging, every block is sent.
        "auto" is "none" for ``solver="newton"`` (whose directions need
        their accuracy: compressing them costs more rounds than it saves
        bytes, see docs/index.md) unless ``n_blocks`` or
        ``blocks_per_worker`` is given, and "independent" otherwise.  With
        "newton" only the direction messages are sparsified; the gradients
        are always sent whole.  The value used is ``sparsifier_``.

    control_variates : bool or "auto", default="auto"
        Whether workers send ``g_i - h_i`` and keep the memory ``h_i``
        (ISEGA/DIANA) so the compression noise vanishes at the optimum.
        "auto" turns them on whenever workers send fewer than all blocks,
        except for ``solver="newton"``, whose compressed answers vanish at
        the optimum by themselves.

    batch_size : int or "auto", default="auto"
        Rows per worker per round for "saga" and "sgd" (clipped to the shard
        size); "newton" and "gd" use every row.  One epoch is ``ceil(max_i N_i / batch_size)`` rounds: a larger
        batch means fewer rounds (messages) per epoch and a larger safe step,
        but, once the rows of a batch overlap, more epochs to a given accuracy.
        "auto" is ``max(16, ceil(2 * (n_features + fit_intercept) /
        (n_workers * mean non-zeros per row)))``: 16 on narrow data, larger on
        wide sparse data, where every round's O(n_features) message work
        would otherwise cost more than its rows (see docs/index.md); 16
        where every worker sends every block without control variates or
        L1 (those rounds cost O(non-zeros), computed lazily).  The value used
        is ``batch_size_``.

    step_size : float or "auto", default="auto"
        The master's step for "saga", "sgd", "gd" and "asgd" (its eta, from
        which its momentum follows; "auto": 1 / (rho L)).  "auto" is the rule of
        ``sklearn_dsparse.step_size`` (safe for every loss, solver and
        sparsifier); the value used is ``step_size_``.  "newton" takes its
        steps by line search and accepts only "auto".

    max_iter : int, default=1000
        Maximum number of iterations ("newton") or epochs (the others).

    tol : float, default=1e-4
        "newton": stop when the estimated suboptimality, half the Newton
        decrement (about ``g^T H^{-1} g / 2``, from the averaged local Newton
        direction), is at most ``tol^2 / 2`` times the objective, i.e. a
        relative suboptimality of about ``tol^2 / 2`` (5e-9 at the default;
        ``tests/test_newton.py`` checks the bound).  The others: stop when,
        over an epoch, the largest change of a parameter is at most ``tol``
        times the largest parameter.

    random_state : int, RandomState instance or None, default=None
        Seeds one stream per worker (and one shared stream); the same seed
        gives the same model, bitwise.

    verbose : int, default=0
        1: print a line when the fit starts (and one while a new process
        loads the compiled kernels), a progress line (objective, rounds,
        uplink bytes, elapsed time, rate) at most every 2 seconds, and a
        last one saying how the fit ended.  2 or more: a line per iteration
        ("newton") or epoch.

    warm_start : bool, default=False
        Start from the previous ``coef_`` and ``intercept_`` when their shape
        fits.

    n_jobs : int, default=None
        Where the workers run.  None or 1: all in this process.  Otherwise the
        ``n_workers`` logical workers run as ``min(n_jobs, n_workers)``
        long-lived tasks of the active joblib backend (loky by default; Dask
        with ``joblib.parallel_config(backend="dask")``), each hosting several
        workers; -1 uses every slot of the backend; 0 is refused.  The model
        is the same, bit for bit, wherever the workers run (see
        docs/engines.md).  With Dask collections as X and y, the tasks run
        on the Dask workers holding their partitions, one per worker: leave
        None (or -1).  With a ``FileShards`` as X, the tasks (and the
        survey of the files) run on the active backend as above and read
        their own files; None reads them in this process.

    master_address : str, default=None
        Host name or IP address on which the driver (the master) listens for
        its worker tasks when ``n_jobs`` runs them elsewhere; unused with
        ``n_jobs=None``.  None reads the environment variable
        ``SKLEARN_DSPARSE_MASTER_ADDRESS``, else 127.0.0.1, which only tasks
        on this machine can reach: on a multi-host cluster (Dask), give an
        address of the driver that the cluster's nodes can reach.  An address
        that is not one of this machine's raises a ValueError at ``fit``.

    asynchronous : bool, default=False
        Asynchronous ISGD (``solver="sgd"`` only; docs/method.md,
        "Asynchronous ISGD"): no rounds; the master applies each worker's
        message as it arrives, with its weight, and sends the model back to
        that worker alone.  Needs the control variates; "auto" turns them
        on.  In process (``n_jobs=None``) arrival times are simulated from
        the workers' streams, so the model depends on ``random_state`` only;
        on loky or Dask it depends on the real arrival order.  An epoch is
        ``n_workers`` times a synchronous epoch's rounds of messages, and
        ``communication_`` counts each message as a round and adds
        ``max_staleness``, ``mean_staleness`` and ``held_messages``.

    max_staleness : int or "auto", default="auto"
        With ``asynchronous=True``, the most master updates allowed between
        the model a message was computed at and its application (at least
        ``n_workers - 1``; "auto": ``2 * n_workers - 1``); a faster worker
        waits rather than exceed it.  ``step_size="auto"`` is the
        synchronous step divided by ``max_staleness + 1``.
"""

SHARED_ATTRIBUTES = """\
    step_size_ : float or None
        The step size used (None for "newton", whose line search chooses
        each step).

    batch_size_ : int
        Rows of the largest shard each worker used per round ("saga",
        "sgd"; every row of it for "newton" and "gd").

    sparsifier_ : str
        The sparsifier used ("auto" resolved).

    n_blocks_ : int
        The number of blocks used.

    blocks_per_worker_ : int
        The number of blocks each worker sent per round.

    communication_ : Mapping
        Totals of the fit: ``rounds``, ``uplink_bytes``, ``downlink_bytes``,
        ``dense_uplink_bytes`` (what ``sparsifier="none"`` would have sent over
        the same rounds), ``uplink_ratio`` and ``blocks_sent``.  A message
        costs a 16-byte header, a 4-byte id per block (none when all blocks are
        sent) and 8 bytes per value.

    history_ : dict of ndarray
        One entry per epoch ("newton": per accepted step), the starting point
        first: ``objective`` (the objective as written above), ``rounds`` and
        ``uplink_bytes`` (cumulative) and ``seconds`` (cumulative time spent
        fitting: the workers' set-up and rounds, not the objective
        evaluations the other solvers' history needs; "newton" has its
        objective from the workers' own messages).
        ``pandas.DataFrame(est.history_)``.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    shard_partitions_ : list of list of int
        Only after a fit of Dask collections or of a ``FileShards``: the
        partitions of X (or the files, by index) that made each logical
        worker's shard, in worker order.  The model is the in-memory fit, bit
        for bit, of the partitions (files) concatenated in this order with
        these shard boundaries (docs/engines.md, "Data on the cluster",
        "Data read by the workers").
"""

STOCHASTIC_NOTE = """\
    Notes
    -----
    Rows go to workers in the order given: sorted data (e.g. by label) gives
    heterogeneous shards, which control variates handle at some cost in
    rounds.  Internally X is used as CSR float64 (sparse input is never
    densified); ``coef_`` and ``intercept_`` take the precision of X
    (float32 for float32 input), as scikit-learn's solvers give them.
"""
