"""Influence functions, exact leave-one-out retraining and TracIn for a logistic head."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from xai_lesson import influence


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.normal(size=60) > 0).astype(float)
    A = influence.with_bias(X)
    return X, A, y, influence.fit_logistic(A, y, C=1.0)


def test_the_fit_is_scikit_learns(problem):
    X, A, y, theta = problem
    reference = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(theta, np.r_[reference.coef_[0], reference.intercept_], atol=1e-5)


def test_refit_without_equals_fitting_from_scratch_on_the_rest(problem):
    _, A, y, theta = problem
    removed = np.zeros((3, len(y)), dtype=bool)
    removed[0, 4] = removed[1, [1, 7, 9]] = removed[2, 30:40] = True
    thetas, largest = influence.refit_without(A, y, 1.0, theta, removed)
    assert largest < 1e-9
    for j in range(3):
        scratch = influence.fit_logistic(A[~removed[j]], y[~removed[j]], C=1.0)
        np.testing.assert_allclose(thetas[:, j], scratch, atol=1e-8)


def test_the_influence_estimate_tracks_the_true_leave_one_out_change(problem):
    _, A, y, theta = problem
    thetas, _ = influence.refit_without(A, y, 1.0, theta, np.eye(len(y), dtype=bool))
    a_test, y_test = A[:1] * 1.5, np.array([1.0])
    true = influence.losses(a_test, y_test, thetas)[0] - influence.losses(a_test, y_test, theta)[0]
    estimate = influence.influence_of_removal(A, y, theta, 1.0, a_test, y_test)[0]
    assert np.corrcoef(true, estimate)[0, 1] > 0.95
    assert np.abs(estimate - true).max() < 0.3 * np.abs(true).max()


def test_self_influence_is_the_diagonal_of_the_influence_matrix(problem):
    _, A, y, theta = problem
    full = influence.influence_of_removal(A, y, theta, 1.0, A, y)
    np.testing.assert_allclose(influence.self_influence(A, y, theta, 1.0), np.diag(full), rtol=1e-10)
    assert (influence.self_influence(A, y, theta, 1.0) >= 0).all()


def test_tracin_equals_autograd_dot_products(problem):
    _, A, y, theta = problem
    checkpoints, rates = [theta * 0.3, theta], [0.5, 0.1]
    scores = influence.tracin(checkpoints, rates, A[:5], y[:5], A[5:7], y[5:7])
    by_autograd = np.zeros((2, 5))
    for t, rate in zip(checkpoints, rates):
        def grad(a, label, t=t):
            parameters = torch.tensor(t, requires_grad=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(a) @ parameters,
                                                                        torch.tensor(label))
            return torch.autograd.grad(loss, parameters)[0].numpy()
        for j in range(2):
            for i in range(5):
                by_autograd[j, i] += rate * grad(A[5 + j], y[5 + j]) @ grad(A[i], y[i])
    np.testing.assert_allclose(scores, by_autograd, rtol=1e-10)
    np.testing.assert_allclose(influence.tracin_self(checkpoints, rates, A[:5], y[:5]),
                               np.diag(influence.tracin(checkpoints, rates, A[:5], y[:5], A[:5], y[:5])))


def test_found_curve_breaks_ties_at_random_not_by_position():
    flipped = np.zeros(100, dtype=bool)
    flipped[:10] = True
    tied = np.zeros(100)
    assert influence.found_curve(tied, flipped)[9] < 10          # position order would find all 10 first
    assert influence.found_curve(flipped.astype(float), flipped)[9] == 10


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="C must be positive"):
        influence.penalty(3, 0)
    with pytest.raises(ValueError, match="labels"):
        influence.gradients(np.ones((3, 2)), np.array([0, 1, 2]), np.zeros(2))
    with pytest.raises(ValueError, match="one learning rate per checkpoint"):
        influence.tracin([np.zeros(2)], [], np.ones((3, 2)), np.zeros(3), np.ones((1, 2)), np.zeros(1))
