"""The engine contract.

An engine hosts the n logical workers of a fit and moves their messages to
the master and the master's broadcast back.  It does no mathematics of its
own: every node runs ``worker.worker_round`` and ``master.master_step`` (or
their halves, and the same step read from the broadcast message), so engines
differ only in where those run and how the bytes travel.

Lifecycle: ``start(problem, coef, seed_sequences)`` hands each worker its shard,
its random stream and the starting point; ``run_epoch(n_rounds)`` runs that many
synchronous rounds; ``coef`` is the master's current parameters; ``counters``
the accumulated ``accounting.COUNTERS``; ``close()`` releases everything (also
on error: engines are context managers).
"""


class Engine:
    def start(self, problem, coef, seed_sequences):
        raise NotImplementedError

    def run_epoch(self, n_rounds):
        raise NotImplementedError

    # start() sets self.problem, self._W (the master's parameters), self._hbar
    # and self._counters.
    @property
    def coef(self):
        """The model: W, or for ``solver="asgd"`` the iterate w = W - d, W
        being the look-ahead point y (``master``)."""
        if self.problem.accelerated:
            return self._W - self._hbar
        return self._W

    @property
    def counters(self):
        return self._counters

    @property
    def statistics(self):
        """What the engine measured beyond bytes: the staleness of an
        asynchronous fit (empty for the synchronous engines)."""
        return {}

    @property
    def wire_bytes(self):
        """Bytes measured on real connections, by direction (empty in process)."""
        return {}

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
