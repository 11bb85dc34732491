"""No exercise check can be fooled: adversarial learners built from each reference never get "correct".

For every registered exercise, a function that memoises its first answer, one that
changes an argument in place, one that returns the answer as a string, one that never
ends, one that leaves a global hook and one that leaves gradients off each get a
"not right yet" line. So do a control_labels that depends on Python's salted hash,
and the time limit is tested on its own, with both of its mechanisms.
"""

import dataclasses
import inspect
import signal
import sys
import threading
import time
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from xai_lesson import exercises
from xai_lesson.exercises import EXERCISES
from xai_lesson.exercises.harness import TimeLimit, run_with_time_limit

CHECKS = {name: getattr(exercises, name) for name in EXERCISES}
SHORT = 0.3          # seconds: the time limit in these tests


def verdict(check, function, capsys, **options):
    check(function, **options)
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, f"a check prints one line, got: {printed!r}"
    return printed.strip()


def assert_not_right(check, function, capsys, *words, **options):
    line = verdict(check, function, capsys, **options)
    assert line.startswith(f"{check.exercise.label}: not right yet: "), line
    assert line.endswith(exercises.CARRY_ON), line
    for word in words:
        assert word in line, line
    return line


# ---------------------------------------------------------------- learners that ignore their inputs

def memoising(reference):
    """The reference's answer to the first call, whatever the later calls ask."""
    first = []

    def memo(*args, **kwargs):
        if not first:
            first.append(reference(*args, **kwargs))
        return first[0]
    return memo


@pytest.mark.parametrize("name", CHECKS)
def test_a_function_that_remembers_its_first_answer_is_not_correct(name, capsys):
    check = CHECKS[name]
    assert_not_right(check, memoising(check.reference), capsys)


@pytest.mark.parametrize("name", CHECKS)
def test_fresh_inputs_differ_between_seeds_and_the_reference_passes_on_them(name):
    """The harness's fresh inputs are not the same twice: a constant cannot match both."""
    registered = EXERCISES[name]
    first, second = (registered.fresh(seed) for seed in exercises.harness.FRESH_SEEDS)
    answers = [registered.reference(*arguments) for arguments in (first, second)]
    if name == "check_control_labels":          # its `same` tests properties: one label per word of the text
        assert len(answers[0]) != len(answers[1])
    else:
        with pytest.raises(Exception) if name == "check_restore_hook" else nullcontext():   # another clean's size
            assert not registered.same(answers[0], answers[1], second)


# ---------------------------------------------------------------- learners that change their inputs

def mutable(value):
    return (torch.is_tensor(value) or isinstance(value, (np.ndarray, list, dict, torch.nn.Module))
            or (dataclasses.is_dataclass(value) and not isinstance(value, type)))


def change(value):
    """Change ``value`` in place (a tensor, array, list, dict, dataclass or module's parameters)."""
    if isinstance(value, torch.nn.Module):
        with torch.no_grad():
            next(value.parameters()).add_(1.0)
    elif torch.is_tensor(value):
        with torch.inference_mode() if value.is_inference() else torch.no_grad():
            value.logical_not_() if value.dtype == torch.bool else value.add_(1)
    elif isinstance(value, np.ndarray):
        if value.dtype == bool:
            np.logical_not(value, out=value)
        elif value.dtype.kind in "iuf":
            value += 1
        else:
            value[0] = "changed"
    elif isinstance(value, list):
        value.append(value[0])
    elif isinstance(value, dict):
        value["changed"] = True
    else:
        change(next(getattr(value, f.name) for f in dataclasses.fields(value) if mutable(getattr(value, f.name))))


def changing(reference, argument):
    """The reference's answer, after which the argument called ``argument`` is changed in place."""
    signature = inspect.signature(reference)

    def changes(*args, **kwargs):
        result = reference(*args, **kwargs)
        change(signature.bind(*args, **kwargs).arguments[argument])
        return result
    return changes


MUTABLE_ARGUMENTS = [(name, argument) for name, registered in EXERCISES.items()
                     for argument, value in inspect.signature(registered.reference).bind(
                         *registered.fresh(1)).arguments.items() if mutable(value)]


@pytest.mark.parametrize("name, argument", MUTABLE_ARGUMENTS)
def test_a_function_that_changes_an_argument_in_place_is_not_correct(name, argument, capsys):
    check = CHECKS[name]
    line = assert_not_right(check, changing(check.reference, argument), capsys, "in place")
    # A layer belongs to the model: the model, checked first, has changed too.
    assert f"it changed its argument `{argument}` in place" in line or \
        (argument in ("layer", "layers") and "it changed its argument `model` in place" in line), line


def test_every_exercise_takes_a_mutable_argument():
    assert {name for name, _ in MUTABLE_ARGUMENTS} == set(CHECKS)


# ---------------------------------------------------------------- the wrong type

@pytest.mark.parametrize("name", CHECKS)
def test_the_answer_as_a_string_is_not_correct(name, capsys):
    check = CHECKS[name]
    returns = check.exercise.returns
    assert_not_right(check, lambda *a, **k: str(check.reference(*a, **k)), capsys,
                     f"it returns a str, not {returns.what}. Hint: {returns.hint}.")


def test_a_list_and_a_tensor_get_the_same_hint_where_a_numpy_array_is_asked_for(capsys):
    check = exercises.check_mass_inside
    as_list = assert_not_right(check, lambda *a: check.reference(*a).tolist(), capsys)
    as_tensor = assert_not_right(check, lambda *a: torch.from_numpy(check.reference(*a)), capsys)
    hint = as_list.split("Hint: ")[1]
    assert hint == as_tensor.split("Hint: ")[1] and "end with .numpy()" in hint, (as_list, as_tensor)


def test_flipped_share_as_a_string_is_refused(capsys):
    check = exercises.check_flipped_share
    assert_not_right(check, lambda *a: f"{check.reference(*a):.6f}", capsys, "it returns a str, not one number")


# ---------------------------------------------------------------- functions that never end

def loops_forever(*args, **kwargs):
    while True:
        pass


def sleeps_forever(*args, **kwargs):
    time.sleep(1e9)


@pytest.mark.parametrize("name", CHECKS)
@pytest.mark.parametrize("forever", [loops_forever, sleeps_forever])
def test_a_function_that_never_ends_is_stopped(name, forever, capsys):
    check = CHECKS[name]
    started = time.monotonic()
    line = assert_not_right(check, forever, capsys, f"your function ran longer than {SHORT:g} s", time_limit=SHORT)
    assert time.monotonic() - started < SHORT + 2, line


def test_the_time_limit_is_ten_seconds_by_default():
    parameters = inspect.signature(exercises.check_fgsm, follow_wrapped=False).parameters
    assert parameters["time_limit"].default == exercises.TIME_LIMIT == 10


@pytest.mark.parametrize("mechanism", ["signal", "thread"])
def test_the_time_limit_stops_a_loop_and_passes_results_and_errors_on(mechanism):
    started = time.monotonic()
    with pytest.raises(TimeLimit):
        run_with_time_limit(loops_forever, 0.3, mechanism=mechanism)
    assert time.monotonic() - started < 2
    assert run_with_time_limit(lambda: 42, 5, mechanism=mechanism) == 42
    with pytest.raises(ZeroDivisionError):
        run_with_time_limit(lambda: 1 / 0, 5, mechanism=mechanism)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="SIGALRM timers are POSIX only")
def test_the_alarm_interrupts_sleep_and_is_put_away():
    previous = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    with pytest.raises(TimeLimit):
        run_with_time_limit(lambda: time.sleep(1e9), 0.3, mechanism="signal")
    assert time.monotonic() - started < 2
    assert signal.getsignal(signal.SIGALRM) is previous
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_thread_fallback_reports_a_sleep_in_time_and_is_used_off_the_main_thread():
    started = time.monotonic()
    with pytest.raises(TimeLimit):
        run_with_time_limit(lambda: time.sleep(1e9), 0.3, mechanism="thread")   # the worker sleeps on, a daemon
    assert time.monotonic() - started < 2

    outcome = {}

    def from_a_thread():
        try:
            run_with_time_limit(loops_forever, 0.3)
        except TimeLimit:
            outcome["stopped"] = True

    caller = threading.Thread(target=from_a_thread)
    caller.start()
    caller.join(10)
    assert outcome == {"stopped": True}


def in_a_thread(function, *args, **kwargs):
    """function(*args, **kwargs) called from another thread, where checks use the time limit's thread fallback."""
    caller = threading.Thread(target=function, args=args, kwargs=kwargs)
    caller.start()
    caller.join(60)
    assert not caller.is_alive()


def test_off_the_main_thread_as_on_windows_references_pass_and_loops_stop(capsys):
    for name, check in CHECKS.items():
        in_a_thread(check, check.reference)
        assert capsys.readouterr().out.strip() == check.exercise.correct(), name
    in_a_thread(exercises.check_gradcam_weights, loops_forever, time_limit=SHORT)
    assert f"your function ran longer than {SHORT:g} s" in capsys.readouterr().out


# ---------------------------------------------------------------- hooks and grad mode left behind

@pytest.mark.parametrize("name", CHECKS)
def test_a_global_hook_left_behind_is_named_and_removed(name, capsys):
    check = CHECKS[name]
    registries = torch.nn.modules.module
    before = len(registries._global_forward_hooks)

    def leaves_a_hook(*args, **kwargs):
        registries.register_module_forward_hook(lambda module, inputs, output: None)
        return check.reference(*args, **kwargs)

    assert_not_right(check, leaves_a_hook, capsys, "a hook is still registered globally", "the check removed it",
                     "call handle.remove()")
    assert len(registries._global_forward_hooks) == before


def test_a_hook_left_on_the_model_is_removed(capsys):
    check = exercises.check_activations_and_gradients

    def leaves_a_hook(model, layer, x, class_index):
        layer.register_forward_pre_hook(lambda module, inputs: None)
        return check.reference(model, layer, x, class_index)

    assert_not_right(check, leaves_a_hook, capsys, "a hook is still registered on the model")


@pytest.mark.parametrize("name", CHECKS)
def test_gradients_left_off_are_named_and_switched_back_on(name, capsys):
    check = CHECKS[name]

    def leaves_gradients_off(*args, **kwargs):
        torch.set_grad_enabled(False)
        return check.reference(*args, **kwargs)

    try:
        assert_not_right(check, leaves_gradients_off, capsys, "your function switched gradients off")
        assert torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


def test_a_check_works_and_leaves_grad_mode_alone_when_gradients_were_off_before(capsys):
    check = exercises.check_vanilla_gradient
    try:
        torch.set_grad_enabled(False)
        assert verdict(check, check.reference, capsys) == check.exercise.correct()
        assert not torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


# ---------------------------------------------------------------- the same labels after a restart

def make_salted_control_labels():
    """control_labels that iterates over a set of words, whose order Python's salted hash sets anew in every process.

    Made in a function, like a notebook's function, so that it is sent to the other process by value."""
    def control_labels(words, labels, seed=0):
        rng = np.random.default_rng(seed)
        keys = [w.lower() for w in words]
        types = list(set(keys))
        lookup = dict(zip(types, rng.choice(np.asarray(labels), size=len(types))))
        return np.array([lookup[k] for k in keys])
    return control_labels


def test_control_labels_that_change_with_the_hash_seed_are_not_correct(capsys):
    assert_not_right(exercises.check_control_labels, make_salted_control_labels(), capsys,
                     "in a new Python process", "types = sorted(set(keys))")


def test_control_labels_sorted_like_the_episode_pass_in_a_fresh_interpreter(capsys):
    def control_labels(words, labels, seed=0):
        rng = np.random.default_rng(seed)
        keys = [w.lower() for w in words]
        types = sorted(set(keys))
        lookup = dict(zip(types, rng.choice(np.asarray(labels), size=len(types))))
        return np.array([lookup[k] for k in keys])

    line = verdict(exercises.check_control_labels, control_labels, capsys)
    assert line == exercises.check_control_labels.exercise.correct(), line


def test_the_package_lists_its_subpackage_for_a_non_editable_install():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib
    from pathlib import Path

    setup = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "xai_lesson.exercises" in setup["packages"]
