"""The conformance suite's own references (softmax_dispatch/conformance/_reference.py)
against closed forms, so that a wrong reference cannot pass a wrong backend."""

import numpy as np
import pytest

from softmax_dispatch.conformance._reference import (
    cross_entropy_reference,
    hardmax_reference,
    logsumexp_reference,
    reference,
    softmax_backward_reference,
    sparsemax_reference,
)

inf, nan = np.inf, np.nan


def test_softmax_backward_reference_is_the_vjp():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5)
    g = rng.standard_normal(5)
    for temperature in (1.0, 0.5):
        p = reference(x, temperature=temperature).astype(float)
        jac = (np.diag(p) - np.outer(p, p)) / temperature
        np.testing.assert_allclose(softmax_backward_reference(g, p, temperature=temperature).astype(float),
                                   jac.T @ g, rtol=1e-13)
        lp = np.log(p)
        jac_log = (np.eye(5) - p[None, :]) / temperature
        np.testing.assert_allclose(softmax_backward_reference(g, lp, temperature=temperature, log=True).astype(float),
                                   jac_log.T @ g, rtol=1e-13)


def test_reference_limits_and_masks():
    x = np.array([[1.0, 3.0, 3.0, -inf], [nan, 1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(reference(x, temperature=0)[0], [0, 0.5, 0.5, 0])
    np.testing.assert_array_equal(reference(x, temperature=inf)[0].astype(float), [1 / 3] * 3 + [0])
    mask = np.array([[True] * 4, [False, True, True, True]])
    np.testing.assert_allclose(reference(x, where=mask)[1].astype(float),
                               [0, *np.exp([1, 2, 0]) / np.exp([1, 2, 0]).sum()], rtol=1e-15)
    assert logsumexp_reference(x, temperature=0)[0] == 3
    assert logsumexp_reference(x, temperature=inf)[0] == inf
    assert logsumexp_reference(np.array([-inf, 2.0]), temperature=inf) == 2
    assert logsumexp_reference(np.ones((3, 0))).tolist() == [-inf] * 3
    assert logsumexp_reference(x, where=mask)[1] == pytest.approx(np.log(np.exp([1, 2, 0]).sum()), rel=1e-15)


def test_sparsemax_reference_closed_forms():
    np.testing.assert_allclose(sparsemax_reference(np.array([1.0, 0.8, -1.0])).astype(float), [0.6, 0.4, 0], rtol=1e-15)
    z = np.array([0.1, 0.2, 0.15, 0.3])
    np.testing.assert_allclose(sparsemax_reference(z).astype(float), z - z.mean() + 0.25, rtol=1e-14)
    np.testing.assert_array_equal(sparsemax_reference(np.array([0.0, inf, 1.0, inf])), [0, 0.5, 0, 0.5])
    np.testing.assert_array_equal(sparsemax_reference(np.array([3.0, 1.0, 3.0]), temperature=0), [0.5, 0, 0.5])
    np.testing.assert_allclose(sparsemax_reference(np.array([[1.0], [0.8], [-1.0]]), axis=0)[:, 0].astype(float),
                               [0.6, 0.4, 0], rtol=1e-15)


def test_hardmax_reference_first_is_c_order():
    x = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(hardmax_reference(x, axis=None, ties="first"), [[0, 1], [0, 0]])
    np.testing.assert_array_equal(hardmax_reference(x, axis=0, ties="first"), [[0, 1], [1, 0]])


def test_cross_entropy_reference_by_hand():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss, grad = cross_entropy_reference(logits, np.array([0, 2]))
    p0 = np.exp(2) / (np.exp(2) + 2)
    assert float(loss) == pytest.approx((-np.log(p0) + np.log(3)) / 2, rel=1e-15)
    np.testing.assert_allclose(grad.astype(float), [[(p0 - 1) / 2, (1 - p0) / 4, (1 - p0) / 4],
                                                    [1 / 6, 1 / 6, -1 / 3]], rtol=1e-14)
    loss, grad = cross_entropy_reference(logits, np.array([-100, -100]), ignore_index=-100)
    assert loss == 0 and np.all(grad == 0)
