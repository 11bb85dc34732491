"""The harness every exercise check runs on.

An episode module registers a check with ``@exercise(...)``. The check's own test
compares the learner's function with the reference on a crafted example and names
typical mistakes. The harness adds what every check needs, so that no check can be
fooled by a function that ignores or damages its inputs:

- every call of the learner's function goes through a guard, which
  - stops it after ``time_limit`` seconds (``run_with_time_limit``);
  - fails it when it changed an argument in place (tensors, arrays, lists, dicts,
    dataclasses and modules' state_dicts, compared with a copy taken before the call);
  - removes any hook it left on a module it was given or in torch's global hook
    registries, and fails it, saying so;
  - switches grad mode back to what it was, and fails it if it had changed;
  - accepts only the exercise's documented return type (``Returns``), with one hint;
- after the test, the learner's function and the reference run on fresh inputs built
  from the seeds in ``FRESH_SEEDS`` (other shapes or values), which catches a function
  that returns a remembered or hard-coded answer;
- where the exercise promises the same answer for one seed (``deterministic=True``),
  the function runs again in a fresh interpreter with another ``PYTHONHASHSEED``.
"""

import ctypes
import dataclasses
import functools
import inspect
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import torch

CARRY_ON = "The notebook carries on with the reference version."
TIME_LIMIT = 10.0        # seconds per call of the learner's function; a check's keyword `time_limit` changes it
FRESH_SEEDS = (1, 2)     # the seeds of the fresh inputs every learner's function is compared on


@dataclasses.dataclass(frozen=True)
class Returns:
    """The documented type of what the learner's function returns, and the one hint for anything else."""

    what: str            # "a torch tensor", as in "it returns a list, not a torch tensor"
    accepts: object      # value -> bool
    hint: str

    def check(self, value):
        if not self.accepts(value):
            raise Wrong(f"it returns {_kind(value)}, not {self.what}", self.hint)


def _kind(value):
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


TENSOR = Returns("a torch tensor", torch.is_tensor,
                 "return a tensor (torch.Tensor): the notebook goes on to do tensor arithmetic with it")
ARRAY = Returns("a torch tensor or a NumPy array", lambda v: torch.is_tensor(v) or isinstance(v, np.ndarray),
                "return a torch tensor (or a NumPy array)")


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One code-along exercise: its number, the function the learner writes, its check and what the harness needs."""

    number: str          # "4.2": episode 04, second exercise
    function: str        # the name of the function the learner writes, e.g. "gradcam_weights"
    check: str           # the name of its check, e.g. "check_gradcam_weights"
    success: str         # what the verdict adds when the function is right
    reference: object    # the tested version, used when the learner's is not right
    returns: Returns     # the documented return type
    fresh: object        # seed -> a tuple of fresh arguments
    same: object         # (got, want, arguments) -> bool, or raises Wrong
    deterministic: bool  # the same answer in a fresh interpreter (another PYTHONHASHSEED)

    @property
    def label(self):
        return f"Exercise {self.number} {self.function}"

    def stub(self):
        """The line that replaces the solution's body in the learners' notebook."""
        return f'raise NotImplementedError("Exercise {self.number}: write {self.function}; see the episode")'

    def not_done(self):
        return f"{self.label}: not done yet. Write it above and run this cell again. {CARRY_ON}"

    def correct(self):
        return f"{self.label}: correct. {self.success}"

    def wrong(self, problem):
        return f"{self.label}: not right yet: {problem} {CARRY_ON}"

    def timed_out(self, seconds):
        return self.wrong(f"your function ran longer than {seconds:g} s, so the check stopped it. Hint: look for a "
                          "loop that never ends, or one that runs far more often than you meant, and time your "
                          "function on the small example in the episode.")


EXERCISES = {}          # check name -> Exercise, in the order they were registered


def by_function(name):
    """The registered exercise whose learner function is called ``name``."""
    for registered in EXERCISES.values():
        if registered.function == name:
            return registered
    raise KeyError(f"no exercise writes a function called {name!r}: register its check in "
                   "xai_lesson/exercises/epNN.py with @exercise(number, function, reference, success, ...).")


class Wrong(Exception):
    """Raised by a check's test when the learner's function is wrong: what is wrong, and a hint."""

    def __init__(self, what, hint):
        super().__init__(f"{what}. Hint: {hint}.")
        self.what, self.hint = what, hint


class TimeLimit(BaseException):
    """Raised inside the learner's function when it runs too long.

    A BaseException, like KeyboardInterrupt, so that an ``except Exception:`` in the
    learner's code does not swallow it."""

    def __init__(self, seconds):
        super().__init__(f"ran longer than {seconds:g} s")
        self.seconds = seconds


def exercise(number, function, reference, success, *, returns, fresh, same=None, deterministic=False):
    """Register a check for exercise ``number``, in which the learner writes ``function``.

    The decorated ``test(learner)`` raises ``Wrong(what, hint)`` or returns nothing;
    ``reference`` is the tested version the notebook uses when the learner's is not
    right; ``success`` is what the verdict says when it is. ``returns`` is the
    documented return type; ``fresh(seed)`` builds new arguments (other shapes or
    values for each seed in ``FRESH_SEEDS``) on which the learner's function must
    agree with the reference, by ``same(got, want, arguments)`` (default: ``close``).
    ``deterministic`` asks for the same answer in a fresh interpreter.

    The registered check takes the learner's function (and ``time_limit``, seconds
    per call) and returns the function to use."""

    def register(test):
        name = "check_" + function
        registered = Exercise(number, function, name, success, reference, returns, fresh,
                              same or (lambda got, want, arguments: close(got, want)), deterministic)
        if name in EXERCISES or any(e.number == number for e in EXERCISES.values()):
            raise ValueError(f"exercise {number} ({function}) is registered twice")
        EXERCISES[name] = registered

        @functools.wraps(test)
        def check(learner, *, time_limit=TIME_LIMIT):
            verdict, use = judge(registered, test, learner, time_limit)
            print(verdict)
            return use

        check.__name__ = name
        check.__doc__ = (f"Check the learner's `{function}` (exercise {number}); print one line and return "
                         f"the function to use: the learner's if it is right, else the reference.")
        check.exercise = registered
        check.reference = reference
        return check

    return register


def judge(registered, test, learner, time_limit=TIME_LIMIT):
    """(verdict line, function to use) for one learner's function. Never raises.

    The check runs with gradients on, inside ``torch.random.fork_rng()``; the
    notebook's grad mode and random numbers are as they were afterwards."""
    reference = registered.reference
    if not callable(learner):
        return registered.wrong(f"`{registered.function}` is a {type(learner).__name__}, not a function. "
                                f"Hint: define it with `def {registered.function}(...)` and run that cell."), reference
    guarded = Guard(registered, learner, time_limit)
    try:
        with torch.random.fork_rng(), torch.enable_grad():
            test(guarded)
            _agrees_on_fresh_inputs(registered, guarded)
            if registered.deterministic:
                _same_in_a_fresh_interpreter(registered, learner, time_limit)
    except Wrong as problem:
        return registered.wrong(str(problem)), reference
    except TimeLimit as stop:
        return registered.timed_out(stop.seconds), reference
    except NotImplementedError:
        return registered.not_done(), reference
    except Exception as error:              # the learner's code failed: summarise it, no traceback
        message = (str(error).strip().splitlines() or [""])[0][:200]
        return registered.wrong(f"your function raised {type(error).__name__}: {message}. Hint: run it on "
                                "the small example in the episode and read the error's last line."), reference
    return registered.correct(), learner


class Guard:
    """The learner's function as a check calls it: time-limited, and failed (``Wrong``) when it changes
    an argument, leaves a hook or a changed grad mode behind, or returns the wrong type."""

    def __init__(self, registered, learner, time_limit=TIME_LIMIT):
        self.registered, self.learner, self.time_limit = registered, learner, time_limit
        self.signature = inspect.signature(registered.reference)

    def __call__(self, *args, **kwargs):
        arguments = self.named(args, kwargs)
        before = {name: snapshot(value) for name, value in arguments.items()}
        hooks = _hook_keys(_modules(list(arguments.values())))
        grad = torch.is_grad_enabled()
        after = {}

        def call():
            torch.set_grad_enabled(grad)       # the caller's grad mode, in a worker thread too: it is per thread
            try:
                return self.learner(*args, **kwargs)
            finally:
                after["grad"] = torch.is_grad_enabled()

        try:
            result = run_with_time_limit(call, self.time_limit)
        except TimeLimit:
            _tidy(hooks, grad)
            raise
        except Exception:
            _tidy(hooks, grad, after.get("grad", grad))
            raise
        _tidy(hooks, grad, after.get("grad", grad), returned=True)
        for name, value in arguments.items():
            if not _equal(before[name], snapshot(value)):
                raise Wrong(f"it changed its argument `{name}` in place", _copy_hint(name, value))
        self.registered.returns.check(result)
        return result

    def named(self, args, kwargs):
        """The arguments of one call by the reference's parameter names."""
        try:
            return dict(self.signature.bind(*args, **kwargs).arguments)
        except TypeError:
            return {**{f"argument {i + 1}": a for i, a in enumerate(args)}, **kwargs}


def _tidy(hooks, grad, grad_after=None, returned=False):
    """Remove the hooks added since ``hooks`` and restore grad mode; then raise Wrong if the call changed either."""
    left = _remove_new_hooks(hooks)
    torch.set_grad_enabled(grad)
    if grad_after is not None and grad_after != grad:
        raise Wrong(f"your function switched gradients {'on' if grad_after else 'off'} "
                    f"(torch.set_grad_enabled({grad_after})) and left them so; the check switched them back",
                    "use `with torch.no_grad():` around the lines that need no gradients, so that they come back "
                    "on when the block ends")
    if returned and left:
        raise Wrong(f"a hook is still registered {left} after your function returned; the check removed it",
                    "keep the handle that register_forward_hook returns and call handle.remove() in a `finally:` "
                    "block, so it runs even after an error")


def _copy_hint(name, value):
    if isinstance(value, torch.nn.Module):
        return ("leave the model's weights and buffers alone: run it, but do not assign to its parameters or "
                "update them")
    copy = {torch.Tensor: f"{name}.clone()", np.ndarray: f"{name}.copy()", list: f"list({name})",
            dict: f"dict({name})"}.get(type(value), f"a copy of {name}")
    return (f"work on a copy, {name} = {copy}, or use operations that return a new value "
            "(`x = x * 2`, not `x *= 2`, `x.mul_(2)` or `x[...] = ...`)")


# ---------------------------------------------------------------------------
# Comparisons, copies of the arguments, hooks
# ---------------------------------------------------------------------------

def as_double(value):
    """A float64 tensor of a tensor, an array or a number."""
    if torch.is_tensor(value):
        return value.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def close(a, b, tol=1e-4):
    """Whether a and b (tensors, arrays, numbers, or tuples and lists of them) have one shape and close values."""
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(close(x, y, tol) for x, y in zip(a, b)))
    a, b = as_double(a), as_double(b)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol))


class _Opaque:
    """Something the guard does not compare: a number, a string, a function (immutable, or not its business)."""

    def __eq__(self, other):
        return isinstance(other, _Opaque)


def snapshot(value):
    """A copy of what a function could change in place in ``value``: tensors, arrays, lists, dicts,
    dataclasses, and a module's state_dict."""
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.nn.Module):
        return {name: tensor.detach().clone() for name, tensor in value.state_dict().items()}
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: snapshot(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return _Opaque()


def _equal(a, b):
    """Exact equality of two snapshots (NaN equals NaN)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and a.dtype == b.dtype
                and bool(((a == b) | ((a != a) & (b != b))).all()))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _modules(values):
    """The torch modules among ``values`` (and inside their lists, tuples, dicts)."""
    found = []
    for value in values:
        if isinstance(value, torch.nn.Module):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += _modules(value)
        elif isinstance(value, dict):
            found += _modules(list(value.values()))
    return found


def _hook_dicts(modules):
    """(where, hook dictionary) for torch's global hooks and every hook dictionary of these modules and their children."""
    registries = vars(torch.nn.modules.module)
    found = [("globally", d) for name, d in registries.items()
             if name.startswith("_global_") and "hook" in name and isinstance(d, dict)]
    for module in modules:
        for child in module.modules():
            found += [("on the model", d) for name, d in vars(child).items() if "hook" in name and isinstance(d, dict)]
    return found


def _hook_keys(modules):
    return [(where, d, set(d)) for where, d in _hook_dicts(modules)]


def _remove_new_hooks(hooks):
    """Remove every hook added since ``_hook_keys``; say where they were ("on the model", "globally"), or ''."""
    where_left = []
    for where, d, keys in hooks:
        for key in set(d) - keys:
            d.pop(key, None)
            where_left.append(where)
    return " and ".join(sorted(set(where_left), reverse=True))


# ---------------------------------------------------------------------------
# The time limit
# ---------------------------------------------------------------------------

def run_with_time_limit(function, seconds, mechanism=None):
    """``function()``, stopped with ``TimeLimit`` after ``seconds``.

    In the main thread of a POSIX process (a Jupyter kernel on Linux or macOS) a
    SIGALRM timer (``signal.setitimer``) raises TimeLimit inside the function, which
    also interrupts ``time.sleep``; like KeyboardInterrupt, only a bare ``except:``
    in the function could swallow it. Elsewhere (Windows, or a check called from another
    thread) the function runs in a daemon worker thread: after ``seconds`` the
    caller gets TimeLimit at once, and ``PyThreadState_SetAsyncExc`` raises it in
    the worker at its next Python instruction. That cannot cut short a call that
    blocks in C (``time.sleep``, one long torch operation): such a worker finishes
    on its own in the background, its result ignored. ``mechanism`` ("signal" or
    "thread") forces one, for tests."""
    if mechanism is None:
        mechanism = ("signal" if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
                     else "thread")
    return (_with_alarm if mechanism == "signal" else _in_a_thread)(function, seconds)


def _with_alarm(function, seconds):
    armed = [True]

    def on_alarm(signum, frame):
        if armed[0]:
            raise TimeLimit(seconds)

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    previous_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            return function()
        finally:
            armed[0] = False       # an alarm from here on, before the timer is cancelled, does nothing
    finally:                       # reached even if the alarm fires before the line above
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_timer[0] > 0:        # someone else's timer was running: give it back what is left
            signal.setitimer(signal.ITIMER_REAL, max(previous_timer[0] - (time.monotonic() - started), 1e-3),
                             previous_timer[1])


def _in_a_thread(function, seconds):
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as error:   # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="exercise check", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(TimeLimit))
        raise TimeLimit(seconds)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# ---------------------------------------------------------------------------
# Fresh inputs, and a fresh interpreter
# ---------------------------------------------------------------------------

def _agrees_on_fresh_inputs(registered, guarded):
    """Compare the learner's function with the reference on the fresh arguments of every seed in FRESH_SEEDS."""
    for seed in FRESH_SEEDS:
        arguments = registered.fresh(seed)
        want = registered.reference(*arguments)
        got = guarded(*arguments)
        if not registered.same(got, want, arguments):
            raise Wrong(f"on another example ({_describe(guarded.named(arguments, {}))}) it does not give the "
                        "reference's answer, though it did on the check's first example",
                        "compute the answer from the arguments of each call: do not keep an answer from an "
                        "earlier call, or one written for a particular example")


def _describe(arguments):
    parts = []
    for name, value in arguments.items():
        if torch.is_tensor(value) or isinstance(value, np.ndarray):
            parts.append(f"{name} of shape {tuple(value.shape)}")
        elif isinstance(value, (list, tuple)) and not _modules(value):
            parts.append(f"{len(value)} {name}")
        elif isinstance(value, (int, float, slice)) and not isinstance(value, bool):
            parts.append(f"{name} = {value}")
    return ", ".join(parts)


_ELSEWHERE = """
import sys
import dill
function, arguments = dill.loads(sys.stdin.buffer.read())
sys.stdout.buffer.write(dill.dumps(function(*arguments)))
"""


def _same_in_a_fresh_interpreter(registered, learner, time_limit):
    """Fail when the learner's function gives another answer in a new Python with another PYTHONHASHSEED.

    The function (with the globals it uses) is sent by value with dill. When it
    cannot be sent, or the other interpreter fails to start it, nothing is concluded.
    The reference is not sent: it is tested, and it would make the other interpreter
    import torch, which takes seconds."""
    import dill

    if learner is registered.reference:
        return
    arguments = registered.fresh(FRESH_SEEDS[0])
    here = Guard(registered, learner, time_limit)(*arguments)
    try:
        payload = dill.dumps((learner, arguments), recurse=True)
    except Exception:
        return
    ours = os.environ.get("PYTHONHASHSEED")
    env = dict(os.environ, PYTHONHASHSEED="2" if ours == "1" else "1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        done = subprocess.run([sys.executable, "-c", _ELSEWHERE], input=payload, capture_output=True, env=env,
                              timeout=time_limit + 60)      # + the time to start Python and import torch
    except subprocess.TimeoutExpired:
        raise TimeLimit(time_limit) from None
    if done.returncode != 0:
        return
    there = dill.loads(done.stdout)
    if not _equal(snapshot(np.asarray(here)), snapshot(np.asarray(there))):
        raise Wrong("for the same arguments it gives another answer in a new Python process, so its answer changes "
                    "every time the kernel restarts: Python salts the hash of strings anew in every process "
                    "(PYTHONHASHSEED), and with it hash(word) and the order of a set of words",
                    "do not use hash(), and sort a set before you draw from it: types = sorted(set(keys))")
