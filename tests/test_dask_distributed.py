"""Dask arrays on a ``distributed.LocalCluster``: two worker processes on loopback
(one started for the module), the graphs pickled and run in other processes,
results checked against the in-memory computation."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import softmax_dispatch as sd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # One Numba thread per worker: the two workers are the parallelism.
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"},
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_two_worker_processes(client):
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
    pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(pids) == 2 and __import__("os").getpid() not in pids


@pytest.mark.parametrize("chunks", [(8, 50), (8, 13)], ids=["rows", "split"])
def test_family_matches_memory(client, chunks):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 50)) * 3).astype(np.float32)
    x[3, 7] = np.inf
    x[5] = -np.inf
    labels = rng.integers(0, 50, 32)
    t = rng.uniform(0.5, 2.0, (32, 1))
    xd = da.from_array(x, chunks=chunks)
    finite = np.where(np.isfinite(x), x, 0)
    lazy = {
        "softmax": (sd.softmax(xd, temperature=t), sd.softmax(x, temperature=t)),
        "log_softmax": (sd.log_softmax(xd), sd.log_softmax(x)),
        "logsumexp": (sd.logsumexp(xd, temperature=t), sd.logsumexp(x, temperature=t)),
        "sparsemax": (sd.sparsemax(xd), sd.sparsemax(x)),
        "hardmax": (sd.hardmax(xd, ties="first"), sd.hardmax(x, ties="first")),
        "gumbel": (sd.gumbel_softmax(xd, hard=True, seed=5), sd.gumbel_softmax(x, hard=True, seed=5)),
        "cross_entropy": (sd.cross_entropy(da.from_array(finite, chunks=chunks), da.from_array(labels, chunks=8),
                                           label_smoothing=0.1),
                          sd.cross_entropy(finite, labels, label_smoothing=0.1)),
    }
    computed = client.compute([v[0] for v in lazy.values()], sync=True)
    for (name, (_, want)), got in zip(lazy.items(), computed):
        got = np.asarray(got)
        assert got.dtype == np.asarray(want).dtype, name
        if name in ("hardmax", "gumbel"):
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, err_msg=name)


def test_mean_cross_entropy_and_gradient_over_generated_logits(client):
    """The bench's computation, small: logits generated on the workers, never gathered."""
    logits = da.random.default_rng(1).standard_normal((64, 1000), chunks=(16, 250), dtype=np.float32)
    labels = da.random.default_rng(2).integers(0, 1000, 64, chunks=16)
    loss, grad = sd.cross_entropy(logits, labels, return_grad=True)
    loss, grad, x, y = client.compute([loss, grad, logits, labels], sync=True)
    want_loss, want_grad = sd.cross_entropy(x, y, return_grad=True)
    assert loss == pytest.approx(float(want_loss), rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-9)


def test_bench_dask_command_runs_small(tmp_path):
    """``softmax-dispatch bench-dask`` end to end, on a few MB (its own LocalClusters)."""
    import json
    import subprocess
    import sys

    path = tmp_path / "dask.json"
    out = subprocess.run(
        [sys.executable, "-m", "softmax_dispatch", "bench-dask", "--gib", "0.02", "--split-gib", "0.01",
         "--slice-gib", "0.01", "--chunk-rows", "32", "--classes", "1000", "--json", str(path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(path.read_text())
    assert [r["step"] for r in report["steps"]] == ["generate", "cross_entropy", "cross_entropy-split4"]
    assert all(r["gb_per_s"] > 0 and len(r["worker_peak_rss_gib"]) == 2 for r in report["steps"])
    assert report["slice"]["in_memory_loss"] == pytest.approx(report["slice"]["cluster_loss"], rel=1e-6)
