"""Checks for episode 10's code-along exercises: training-data attribution."""

import numbers

import numpy as np
import torch

from .harness import ARRAY, Returns, Wrong, close, exercise


# ---------------------------------------------------------------- Exercise 10.1

def _reference_removal_influence(A, y, theta, C, a_test, y_test):
    from xai_lesson.influence import influence_of_removal
    return influence_of_removal(A, y, theta, C, np.asarray(a_test)[None], np.atleast_1d(y_test))[0]


def _logistic_problem(seed, n, d, C):
    """A small logistic regression: features with a bias column, labels, the fitted theta, C, one test example."""
    from xai_lesson.influence import fit_logistic, with_bias
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + rng.normal(size=d)             # an offset, so the bias matters
    y = (X @ rng.normal(size=d) + rng.normal(size=n) > 0).astype(float)
    y[:2] = (0.0, 1.0)                                           # both classes always present
    A = with_bias(X)
    theta = fit_logistic(A, y, C)
    a_test = with_bias(rng.normal(size=(1, d)) + X.mean(0))[0]
    return A, y, theta, C, a_test, float(rng.integers(0, 2))


def _fresh_logistic(seed):
    return _logistic_problem(100 + seed, 10 + 4 * seed, 2 + seed, 0.3 * seed)


def _hessian(A, theta, penalty):
    p = 1 / (1 + np.exp(-A @ theta))
    return (A * (p * (1 - p))[:, None]).T @ A + np.diag(penalty)


@exercise("10.1", "removal_influence", _reference_removal_influence,
          "One number per training example: grad L_test . H^-1 grad loss_i, with the regulariser in H.",
          returns=ARRAY, fresh=_fresh_logistic)
def check_removal_influence(learner):
    for seed, n, d, C in ((10, 14, 3, 0.2), (11, 20, 4, 0.5)):  # strong regularisation: leaving it out shows
        A, y, theta, C, a_test, y_test = _logistic_problem(seed, n, d, C)
        got = np.asarray(learner(A.copy(), y.copy(), theta.copy(), C, a_test.copy(), y_test), dtype=float)
        want = _reference_removal_influence(A, y, theta, C, a_test, y_test)
        if got.shape != want.shape:
            raise Wrong(f"it returns shape {got.shape} for {n} training examples, not ({n},)",
                        "one number per training example: G @ np.linalg.solve(H, g_test), G of shape (n, p)")
        if close(got, want):
            continue
        if close(got, -want):
            raise Wrong("the sign is flipped: it gives the effect of adding the example again, not of removing it",
                        "use gradients (p - y) * a for both losses, and do not negate the result")
        G = A * (1 / (1 + np.exp(-A @ theta)) - y)[:, None]
        g_test = a_test * (1 / (1 + np.exp(-a_test @ theta)) - y_test)
        penalty = np.full(len(theta), 1 / C)
        penalty[-1] = 0.0
        unregularised = G @ np.linalg.pinv(_hessian(A, theta, 0 * penalty)) @ g_test
        if close(got, unregularised, tol=1e-3) or close(got, -unregularised, tol=1e-3):
            raise Wrong("its Hessian leaves out the regulariser (or inverts the unregularised Hessian)",
                        "add diag(1/C) for the weights, 0 for the bias, to A.T @ diag(p (1 - p)) @ A")
        if close(got, G @ np.linalg.solve(_hessian(A, theta, np.full(len(theta), 1 / C)), g_test)):
            raise Wrong("it regularises the bias too", "the bias (the last parameter) is not penalised: "
                        "set the last entry of the penalty to 0")
        if close(got, G @ g_test) or close(got, -(G @ g_test)):
            raise Wrong("it leaves out the Hessian: that is a gradient dot product, not an influence",
                        "solve H x = g_test with H the Hessian of the regularised loss, then take G @ x")
        if close(got, want / n) or close(got, want * n):
            raise Wrong("it is off by a factor of n", "the objective is the SUM of the losses plus |w|^2 / (2 C): "
                        "no division by n")
        raise Wrong("the values are not grad L_test . H^-1 grad loss_i",
                    "G = A * (p - y)[:, None]; H = A.T @ diag(p (1 - p)) @ A + diag(penalty); "
                    "return G @ np.linalg.solve(H, g_test)")


# ---------------------------------------------------------------- Exercise 10.2

def _reference_tracin_score(checkpoints, learning_rates, loss_fn, train_example, test_example):
    total = 0.0
    for model, rate in zip(checkpoints, learning_rates):
        parameters = list(model.parameters())
        g_train = torch.autograd.grad(loss_fn(model(train_example[0]), train_example[1]), parameters)
        g_test = torch.autograd.grad(loss_fn(model(test_example[0]), test_example[1]), parameters)
        total += rate * float(sum((a * b).sum() for a, b in zip(g_train, g_test)))
    return total


def _two_layer(seed, d, hidden):
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return model


def _tracin_problem(seed, d, hidden, rates):
    generator = torch.Generator().manual_seed(1000 + seed)
    checkpoints = [_two_layer(seed * 10 + k, d, hidden) for k in range(len(rates))]
    train_example = (torch.randn(1, d, generator=generator, dtype=torch.float64), torch.tensor([seed % 2]))
    test_example = (torch.randn(1, d, generator=generator, dtype=torch.float64), torch.tensor([1 - seed % 2]))
    return checkpoints, list(rates), torch.nn.functional.cross_entropy, train_example, test_example


def _fresh_tracin(seed):
    return _tracin_problem(seed, 2 + seed, 3 + seed, [0.3 * seed, 0.1, 0.05][:1 + seed])


SCORE = Returns("one number", lambda v: (isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)))
                or (torch.is_tensor(v) and v.numel() == 1), "return one score, a float: total.item() or float(total)")


def _variant(checkpoints, rates, loss_fn, train_example, test_example, *, no_rate=False, last_layer=False,
             pair="train-test", last_checkpoint=False):
    total = 0.0
    chosen = list(zip(checkpoints, rates))[-1:] if last_checkpoint else zip(checkpoints, rates)
    for model, rate in chosen:
        parameters = list(model.parameters())[-2:] if last_layer else list(model.parameters())
        first, second = {"train-test": (train_example, test_example), "train-train": (train_example, train_example),
                         "test-test": (test_example, test_example)}[pair]
        g1 = torch.autograd.grad(loss_fn(model(first[0]), first[1]), parameters)
        g2 = torch.autograd.grad(loss_fn(model(second[0]), second[1]), parameters)
        total += (1.0 if no_rate else rate) * float(sum((a * b).sum() for a, b in zip(g1, g2)))
    return total


@exercise("10.2", "tracin_score", _reference_tracin_score,
          "The sum over checkpoints of learning rate x (test-loss gradient) . (training-loss gradient), all parameters.",
          returns=SCORE, fresh=_fresh_tracin)
def check_tracin_score(learner):
    for seed, d, hidden, rates in ((7, 3, 4, (0.5, 0.2)), (8, 4, 3, (0.05, 0.4, 0.1))):
        problem = _tracin_problem(seed, d, hidden, rates)
        got = float(learner(*problem))
        want = _reference_tracin_score(*problem)
        if close(got, want):
            continue
        if close(got, -want):
            raise Wrong("the sign is flipped", "add + learning rate x the dot product: a positive score means the "
                        "steps on the training example lowered the test loss")
        mistakes = [
            ({"no_rate": True}, "it leaves out the learning rates",
             "multiply each checkpoint's dot product by its learning rate"),
            ({"last_layer": True}, "it uses only the last layer's parameters",
             "take the gradient with respect to every parameter: list(model.parameters())"),
            ({"pair": "train-train"}, "it dots the training example's gradient with itself (self-influence)",
             "take one gradient of the training example's loss and one of the test example's"),
            ({"pair": "test-test"}, "it dots the test example's gradient with itself",
             "take one gradient of the training example's loss and one of the test example's"),
            ({"last_checkpoint": True}, "it uses only the last checkpoint", "sum over all the checkpoints"),
        ]
        for options, what, hint in mistakes:
            if close(got, _variant(*problem, **options)):
                raise Wrong(what, hint)
        raise Wrong("the score is not the sum of learning rate x gradient dot products",
                    "for each checkpoint, torch.autograd.grad of both losses w.r.t. list(model.parameters()), "
                    "then sum rate * (g_train * g_test).sum() over the parameters")
