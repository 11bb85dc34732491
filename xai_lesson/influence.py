"""Training-data attribution for a logistic-regression head: influence functions, exact
leave-one-out retraining, and TracIn, the tested versions of what episode 10 builds by hand.

Conventions. ``A`` is the design matrix with a last column of ones (the bias), ``y`` holds 0/1
labels, and the model predicts ``p = sigmoid(A @ theta)``. The training objective is
scikit-learn's ``LogisticRegression(C=C)``:

    J(theta) = sum_i loss_i(theta) + ||w||^2 / (2 C),     w = theta without the bias,

so the bias is not penalised. The *influence of removing* training example i on a test
loss is the first-order change of that loss when i is left out and the model refitted:

    influence_i = grad L_test(theta)^T  H^{-1}  grad loss_i(theta),

with H the Hessian of J (regulariser included). Positive means: removing i raises the test
loss, so i was helping (a *proponent*). All arithmetic is in float64.
"""

import numpy as np
from scipy.special import expit


def with_bias(features):
    """The features with a column of ones appended, as float64: the design matrix A."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array (examples, features), got shape {features.shape}.")
    return np.hstack([features, np.ones((len(features), 1))])


def penalty(n_parameters, C):
    """The diagonal of the regulariser's Hessian: 1/C for each weight, 0 for the bias (the last entry)."""
    if not C > 0:
        raise ValueError(f"C must be positive, got {C!r}.")
    diagonal = np.full(n_parameters, 1.0 / C)
    diagonal[-1] = 0.0
    return diagonal


def _check(A, y):
    A = np.asarray(A, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if A.ndim != 2 or y.shape != (len(A),) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"need A of shape (n, p) and n labels in {{0, 1}}; got {A.shape} and {y.shape}.")
    return A, y


def losses(A, y, theta):
    """Cross-entropy of each example: shape (n,) for one theta (p,), (n, m) for m thetas (p, m)."""
    A, y = _check(A, y)
    logits = A @ np.asarray(theta, dtype=np.float64)
    labels = y if logits.ndim == 1 else y[:, None]
    return np.logaddexp(0.0, logits) - labels * logits


def gradients(A, y, theta):
    """Each example's loss gradient with respect to theta, (p - y) * a: shape (n, p)."""
    A, y = _check(A, y)
    return A * (expit(A @ theta) - y)[:, None]


def hessian(A, y, theta, C):
    """Hessian of the regularised objective J at theta: A^T diag(p (1 - p)) A + diag(penalty)."""
    A, y = _check(A, y)
    q = expit(A @ theta)
    return (A * (q * (1 - q))[:, None]).T @ A + np.diag(penalty(A.shape[1], C))


def fit_logistic(A, y, C, theta=None, max_steps=100):
    """Minimise J by Newton's method (from ``theta`` if given, else zero) to machine precision."""
    A, y = _check(A, y)
    theta = np.zeros(A.shape[1]) if theta is None else np.array(theta, dtype=np.float64)
    diagonal = penalty(A.shape[1], C)
    for _ in range(max_steps):
        gradient = A.T @ (expit(A @ theta) - y) + diagonal * theta
        step = np.linalg.solve(hessian(A, y, theta, C), gradient)
        theta = theta - step
        if np.abs(step).max() < 1e-12:
            return theta
    raise RuntimeError(f"Newton's method did not converge in {max_steps} steps.")


def refit_without(A, y, C, theta, removed, tol=1e-9, max_steps=500):
    """Exact retraining without each set of examples, all sets at once.

    ``removed`` is a boolean array (m, n): row j marks the examples left out of refit j.
    Starting from the full fit ``theta``, every refit takes the same preconditioned step
    theta <- theta - H^{-1} grad J_{-S}(theta), with H the full-data Hessian; this converges
    because leaving a few examples out changes H little. Returns the refitted thetas (p, m)
    and the largest remaining gradient entry, which is below ``tol``.
    """
    A, y = _check(A, y)
    removed = np.asarray(removed, dtype=bool)
    if removed.ndim != 2 or removed.shape[1] != len(A):
        raise ValueError(f"removed must be a boolean array (m, {len(A)}), got shape {removed.shape}.")
    diagonal = penalty(A.shape[1], C)[:, None]
    factor = np.linalg.cholesky(hessian(A, y, theta, C))
    kept = (~removed).T.astype(np.float64)                                  # (n, m)
    thetas = np.repeat(np.asarray(theta, dtype=np.float64)[:, None], removed.shape[0], axis=1)
    for _ in range(max_steps):
        gradient = A.T @ (kept * (expit(A @ thetas) - y[:, None])) + diagonal * thetas
        largest = np.abs(gradient).max()
        if largest < tol:
            return thetas, largest
        thetas = thetas - np.linalg.solve(factor.T, np.linalg.solve(factor, gradient))
    raise RuntimeError(f"refitting did not converge in {max_steps} steps (largest gradient {largest:.1e}).")


def influence_of_removal(A, y, theta, C, A_test, y_test):
    """First-order change of each test loss when each training example is removed: shape (n_test, n).

    grad L_test^T H^{-1} grad loss_i, with one linear solve for all test examples.
    """
    solved = np.linalg.solve(hessian(A, y, theta, C), gradients(A_test, y_test, theta).T)   # (p, n_test)
    return (gradients(A, y, theta) @ solved).T


def self_influence(A, y, theta, C):
    """Each training example's influence of removal on its own loss: grad loss_i^T H^{-1} grad loss_i."""
    G = gradients(A, y, theta)
    return np.einsum("ij,ji->i", G, np.linalg.solve(hessian(A, y, theta, C), G.T))


def tracin(checkpoints, learning_rates, A, y, A_test, y_test):
    """TracInCP: sum over checkpoints k of lr_k * grad loss_test(theta_k) . grad loss_i(theta_k).

    Shape (n_test, n). Positive: the steps on example i lowered the test loss (a proponent).
    """
    if len(checkpoints) != len(learning_rates) or not len(checkpoints):
        raise ValueError("pass one learning rate per checkpoint, and at least one checkpoint.")
    total = 0.0
    for theta, rate in zip(checkpoints, learning_rates):
        total = total + rate * gradients(A_test, y_test, theta) @ gradients(A, y, theta).T
    return total


def tracin_self(checkpoints, learning_rates, A, y):
    """TracIn self-influence: sum over checkpoints of lr_k * ||grad loss_i(theta_k)||^2, shape (n,)."""
    return sum(rate * (gradients(A, y, theta) ** 2).sum(1) for theta, rate in zip(checkpoints, learning_rates))


def found_curve(scores, flipped, seed=0):
    """How many of the ``flipped`` examples are among the top k by ``scores``, for k = 1..n.

    Ties are broken at random (seeded), never by position.
    """
    scores = np.asarray(scores, dtype=np.float64)
    flipped = np.asarray(flipped, dtype=bool)
    return np.cumsum(flipped[ranked(scores, seed)])


def ranked(scores, seed=0):
    """Indices of ``scores`` from the largest to the smallest; ties broken at random (seeded), never by position."""
    scores = np.asarray(scores, dtype=np.float64)
    jitter = np.random.default_rng(seed).permutation(len(scores))
    return np.lexsort((jitter, -scores))
