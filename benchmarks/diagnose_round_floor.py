"""How much of a small loky round is the workers' computation?

    python benchmarks/diagnose_round_floor.py [d] [n_workers]     # default 100 2

About a minute.  A diagnosis for ``bench_round_time.py``'s row d=100, n=2 (the
one whose target, <= 2x the bare ping, is not met), not a benchmark with a
target.  It alternates, ``REPEATS`` times, three measurements of one gd round
on the synthetic data of ``bench_round_time.py`` (n_jobs=2, loky):

- "engine": the library as it is;
- "no model code": the same engine, but each task computes its workers'
  messages once and then resends those frames every round (values set to
  1e-12, so W barely moves and the fit neither converges nor diverges; the
  round field rewritten), so the tasks run no model code; the master's side
  (reads, aggregation, the broadcast, the step) and the tasks' reads, steps
  from the broadcast and writes are unchanged;
- "bare": ``bench_round_time.bare_ping`` of the same frames.

If "no model code" is already above 2x "bare", no amount of speed in the
workers' computation meets the target: what is left is the engine's own work
per round on both sides, in Python and system calls, on two shared cores.
"""

import statistics
import sys
import warnings

import numpy as np

import bench_round_time as bench  # beside this script, so on sys.path when run

REPEATS = 5
EPOCHS = 300


def serve_without_model_code(address, authkey):
    """A worker task whose rounds resend its first round's frames.  Defined
    in __main__ so that loky ships it by value; it patches the task's
    ``_WorkerGroup.send_round`` for its own call only."""
    import numpy as np

    from sklearn_dsparse.engines import joblib as engine_module
    from sklearn_dsparse.engines._transport import frame_spans

    original = engine_module._WorkerGroup.send_round
    saved = {}

    def send_round(self, stream, rnd, u_blocks, u_rows):
        n_hosted = len(self.worker_ids)
        if not saved:
            begin, end = engine_module._hosted_rounds(0, n_hosted, rnd, u_blocks,
                                                      u_rows, *self.pack_args)
            frames = self.out[begin:end].copy()
            spans = np.empty((n_hosted, 2), dtype=np.int64)
            frame_spans(frames, 0, frames.size, n_hosted, spans)
            for offset, size in spans:
                n_ids = int.from_bytes(bytes(frames[offset + 4:offset + 8]), "little")
                values = frames[offset + 16 + 4 * n_ids:offset + size]
                values[:] = np.full(values.size // 8, 1e-12).view(np.uint8)
            saved.update(frames=frames, spans=spans)
        frames = saved["frames"]
        for offset, _ in saved["spans"]:
            frames[offset + 8:offset + 16] = np.array([rnd], "<u8").view(np.uint8)
        stream.send(frames)

    engine_module._WorkerGroup.send_round = send_round
    try:
        return engine_module.serve(address, authkey)
    finally:
        engine_module._WorkerGroup.send_round = original


def main():
    warnings.simplefilter("ignore")
    from sklearn_dsparse.engines import joblib as engine_module

    d = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    X, y = bench.synthetic(d, n)
    serve = engine_module.serve
    bench.fit_rounds(X, y, n, 2, 3)  # start loky, compile
    rows = []
    for _ in range(REPEATS):
        engine = bench.fit_rounds(X, y, n, 2, EPOCHS)[0]
        engine_module.serve = serve_without_model_code
        try:
            floor = bench.fit_rounds(X, y, n, 2, EPOCHS)[0]
        finally:
            engine_module.serve = serve
        bare = bench.bare_ping(d, n)[0]
        rows.append((engine, floor, bare))
        print(f"engine {engine * 1e3:.3f} ms   no model code {floor * 1e3:.3f} ms   "
              f"bare {bare * 1e3:.3f} ms", flush=True)
    rows = np.array(rows)
    engine, floor, bare = np.median(rows, axis=0) * 1e3
    print(f"\nd={d}, n_workers={n}, loky n_jobs=2, median of {REPEATS}: engine "
          f"{engine:.3f} ms, no model code {floor:.3f} ms, bare {bare:.3f} ms")
    print("per-repeat ratios to bare (median): engine "
          f"{statistics.median(rows[:, 0] / rows[:, 2]):.2f}x, no model code "
          f"{statistics.median(rows[:, 1] / rows[:, 2]):.2f}x")


if __name__ == "__main__":
    main()
