"""``softmax-dispatch bench-dask``: softmax's family beyond one machine's memory.

The mean cross-entropy (a reduction of ``log_softmax``) of lazily generated float32
logits, rows of 50,257 classes, larger than the machine's memory (32 GiB by
default), on a ``distributed.LocalCluster`` (or any Dask cluster: ``--scheduler
tcp://host:8786``).  Each block of logits is generated on a worker, used and
dropped; nothing is gathered.  Reported: wall time, GB/s of logits, each worker's
peak RSS, the time of generating alone (the floor of this pipeline), and, on a
slice that fits in memory, the in-memory backend against the Dask path.

Steps (each on a fresh cluster, so each worker's peak RSS is that step's):

- ``generate``: ``logits.sum()`` (generation and a reduction, no softmax);
- ``cross_entropy``: ``sd.cross_entropy(logits, labels)``, the class axis in one
  chunk (one backend call per block);
- ``cross_entropy-split``: the same with the class axis in ``--split`` chunks (the
  two-pass path: partial statistics, a tree merge, normalisation), on
  ``--split-gib`` of logits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time

import numpy as np

GIB = 2**30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gib", type=float, default=32.0, help="GiB of float32 logits (default 32)")
    parser.add_argument("--classes", type=int, default=50257)
    parser.add_argument("--chunk-rows", type=int, default=1024, help="rows per block (default 1024: 206 MB)")
    parser.add_argument("--split", type=int, default=4, help="class-axis chunks of the split step (default 4)")
    parser.add_argument("--split-gib", type=float, default=8.0, help="GiB of logits of the split step (default 8)")
    parser.add_argument("--slice-gib", type=float, default=1.0, help="GiB of the in-memory comparison (default 1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--memory-limit", default="8GiB", help="per LocalCluster worker (default 8GiB)")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running Dask scheduler (tcp://host:8786) instead of a LocalCluster")
    parser.add_argument("--json", default=None, help="write the figures as JSON here")
    parser.add_argument("--markdown", default=None, help="write the table as Markdown here")


def _logits(rows: int, classes: int, chunk_rows: int, class_chunks: int = 1, seed: int = 0):
    """Lazy logits, uniform in [-4, 4), and labels: each block drawn on its worker from
    a generator seeded by the block's position (``rng.random`` in float32 costs about
    1 ns an element; ``standard_normal`` was 8x slower and dominated every step)."""
    import dask.array as da

    width = -(-classes // class_chunks)
    row_chunks = (chunk_rows,) * (rows // chunk_rows) + ((rows % chunk_rows,) if rows % chunk_rows else ())
    class_sizes = (width,) * (classes // width) + ((classes % width,) if classes % width else ())
    logits = da.map_blocks(_uniform_block, seed=seed, chunks=(row_chunks, class_sizes), dtype=np.float32,
                           meta=np.empty((0, 0), np.float32))
    labels = da.map_blocks(_label_block, seed=seed, classes=classes, chunks=(row_chunks,), dtype=np.int64,
                           meta=np.empty((0,), np.int64))
    return logits, labels


def _uniform_block(seed, block_info=None):
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    x = np.random.default_rng([seed, r0, c0]).random((r1 - r0, c1 - c0), dtype=np.float32)
    x *= 8
    x -= 4
    return x


def _label_block(seed, classes, block_info=None):
    ((r0, r1),) = block_info[None]["array-location"]
    return np.random.default_rng([seed + 1, r0]).integers(0, classes, r1 - r0)


def _peak_rss(dask_worker=None) -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


class _Cluster:
    """A fresh LocalCluster per step (its workers' peak RSS is the step's), or a client
    of the given scheduler."""

    def __init__(self, args):
        self.args = args

    def __enter__(self):
        import distributed

        if self.args.scheduler:
            self.cluster = None
            self.client = distributed.Client(self.args.scheduler)
        else:
            threads = self.args.threads_per_worker
            self.cluster = distributed.LocalCluster(
                n_workers=self.args.workers, threads_per_worker=threads, processes=True,
                host="127.0.0.1", dashboard_address=None, memory_limit=self.args.memory_limit,
                env={"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)},
            )
            self.client = distributed.Client(self.cluster)
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _warm(client, classes):
    """Compile (or load from Numba's cache) the kernels on every worker, untimed."""
    import softmax_dispatch as sd

    def warm():
        x = np.zeros((4, classes), np.float32)
        sd.cross_entropy(x, np.zeros(4, np.int64))
        return True

    client.run(warm)


def _step(args, name, build, nbytes):
    with _Cluster(args) as client:
        _warm(client, args.classes)
        lazy = build()
        start = time.perf_counter()
        value = client.compute(lazy, sync=True)
        seconds = time.perf_counter() - start
        peaks = client.run(_peak_rss)
    row = {"step": name, "seconds": seconds, "gb": nbytes / 1e9, "gb_per_s": nbytes / 1e9 / seconds,
           "worker_peak_rss_gib": sorted(v / GIB for v in peaks.values()), "value": float(value)}
    print(f"{name:22s} {nbytes / GIB:7.1f} GiB {seconds:8.1f} s {row['gb_per_s']:6.2f} GB/s  "
          f"worker peak RSS {', '.join(f'{v:.2f}' for v in row['worker_peak_rss_gib'])} GiB  value {value:.6f}",
          flush=True)
    return row


def _median_time(function, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _slice_comparison(args):
    """On a slice that fits: the in-memory backend, Dask's threaded scheduler on the
    same NumPy data, and the cluster on the same logits generated lazily."""
    import dask
    import dask.array as da

    import softmax_dispatch as sd

    rows = int(args.slice_gib * GIB // (4 * args.classes)) // args.chunk_rows * args.chunk_rows
    logits, labels = _logits(rows, args.classes, args.chunk_rows)
    with dask.config.set(scheduler="threads"):
        x, y = dask.compute(logits, labels)
    nbytes = x.nbytes
    sd.cross_entropy(x[:8], y[:8])  # compile
    memory = _median_time(lambda: sd.cross_entropy(x, y))
    xd = da.from_array(x, chunks=(args.chunk_rows, args.classes))
    yd = da.from_array(y, chunks=args.chunk_rows)
    with dask.config.set(scheduler="threads"):
        threaded = _median_time(lambda: sd.cross_entropy(xd, yd).compute())
    want = float(sd.cross_entropy(x, y))
    x = xd = None  # free the slice before the cluster starts
    out = {"rows": rows, "gb": nbytes / 1e9, "in_memory_s": memory, "dask_threads_s": threaded,
           "in_memory_loss": want}
    with _Cluster(args) as client:
        _warm(client, args.classes)
        generate = _median_time(lambda: client.compute(logits.sum(dtype=np.float64), sync=True))
        lazy = _median_time(lambda: client.compute(sd.cross_entropy(logits, labels), sync=True))
        out["cluster_loss"] = float(client.compute(sd.cross_entropy(logits, labels), sync=True))
    out.update(cluster_generate_s=generate, cluster_generated_s=lazy)
    print(f"slice {rows}x{args.classes} ({nbytes / GIB:.2f} GiB): in memory {memory:.3f} s "
          f"({nbytes / 1e9 / memory:.2f} GB/s), Dask threads on the same array {threaded:.3f} s, "
          f"cluster generate {generate:.3f} s, cluster generate + cross_entropy {lazy:.3f} s", flush=True)
    return out


def _machine():
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    import dask
    import distributed
    import numba

    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory, 1),
            "numpy": np.__version__, "numba": numba.__version__, "dask": dask.__version__,
            "distributed": distributed.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def _markdown(result) -> str:
    m, a = result["machine"], result["args"]
    if a["scheduler"]:
        where = f"scheduler {a['scheduler']}"
    else:
        where = (f"LocalCluster of {a['workers']} worker processes x {a['threads_per_worker']} thread, "
                 f"memory_limit {a['memory_limit']}")
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB RAM), "
        f"numpy {m['numpy']}, numba {m['numba']}, dask/distributed {m['dask']}/{m['distributed']}; "
        f"{where}; "
        f"float32 logits of {a['classes']} classes, uniform in [-4, 4), drawn block by block on the workers, "
        f"blocks of {a['chunk_rows']} rows.",
        "",
        "| step | logits | wall s | GB/s | worker peak RSS (GiB) | value |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["steps"]:
        lines.append(f"| {row['step']} | {row['gb'] / GIB * 1e9:.1f} GiB | {row['seconds']:.1f} | "
                     f"{row['gb_per_s']:.2f} | {', '.join(f'{v:.2f}' for v in row['worker_peak_rss_gib'])} | "
                     f"{row['value']:.6f} |")
    s = result["slice"]
    lines += [
        "",
        f"Slice that fits ({s['rows']} x {a['classes']}, {s['gb']:.2f} GB), mean cross-entropy, medians of 3:",
        "",
        "| how | s | GB/s |",
        "|---|---|---|",
        f"| in memory, `numba_cpu` (all cores) | {s['in_memory_s']:.3f} | {s['gb'] / s['in_memory_s']:.2f} |",
        f"| the same NumPy array as a Dask array, threaded scheduler | {s['dask_threads_s']:.3f} | "
        f"{s['gb'] / s['dask_threads_s']:.2f} |",
        f"| cluster: generate the slice and sum it | {s['cluster_generate_s']:.3f} | "
        f"{s['gb'] / s['cluster_generate_s']:.2f} |",
        f"| cluster: generate the slice and its cross-entropy | {s['cluster_generated_s']:.3f} | "
        f"{s['gb'] / s['cluster_generated_s']:.2f} |",
        "",
        f"Loss on the slice: in memory {s['in_memory_loss']:.9g}, cluster {s['cluster_loss']:.9g}.",
    ]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    import softmax_dispatch as sd

    classes = args.classes
    rows = int(args.gib * GIB // (4 * classes)) // args.chunk_rows * args.chunk_rows
    if rows * 4 * classes < args.gib * GIB:
        rows += args.chunk_rows
    split_rows = int(args.split_gib * GIB // (4 * classes)) // args.chunk_rows * args.chunk_rows
    print(f"{rows} x {classes} float32 logits = {rows * classes * 4 / GIB:.1f} GiB "
          f"({rows * classes * 4 / 1e9:.1f} GB) in blocks of {args.chunk_rows} rows", flush=True)
    result = {"machine": _machine(), "args": vars(args), "steps": []}
    result["slice"] = _slice_comparison(args)

    def generate():
        logits, _ = _logits(rows, classes, args.chunk_rows)
        return logits.sum(dtype=np.float64)

    def cross_entropy():
        logits, labels = _logits(rows, classes, args.chunk_rows)
        return sd.cross_entropy(logits, labels)

    def split():
        logits, labels = _logits(split_rows, classes, args.chunk_rows, class_chunks=args.split)
        return sd.cross_entropy(logits, labels)

    nbytes = rows * classes * 4
    result["steps"].append(_step(args, "generate", generate, nbytes))
    result["steps"].append(_step(args, "cross_entropy", cross_entropy, nbytes))
    if args.split > 1 and split_rows:
        result["steps"].append(_step(args, f"cross_entropy-split{args.split}", split, split_rows * classes * 4))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(_markdown(result))
    print(_markdown(result))
    return 0
