"""Checks for the code-along exercises: instant feedback for learners who work alone.

In an episode's notebook, each exercise is a function the learner writes. The
cell after it calls its check, for example::

    gradcam_weights = exercises.check_gradcam_weights(gradcam_weights)

A check runs the learner's function on small cases (seconds on a CPU), compares
it with the tested reference in this package and with properties the method must
satisfy, and prints ONE line:

- ``Exercise 4.2 gradcam_weights: correct. ...`` when it passes;
- ``Exercise 4.2 gradcam_weights: not right yet: <what is wrong>. Hint: <how to fix it>. ...``
  when it fails, including when the learner's code raises (the exception's type and
  message, never a traceback from inside torch) or runs past the time limit;
- ``Exercise 4.2 gradcam_weights: not done yet. ...`` while the function still raises
  ``NotImplementedError`` (the stub in the learners' notebook).

It returns the function the rest of the notebook should use: the learner's if it
passed, the reference otherwise, so a learner who skips an exercise can carry on.

The checks of episode NN are in ``epNN.py``; ``harness.py`` runs them, so that a
function that ignores its inputs, changes them in place, leaves a hook or grad mode
behind, returns the wrong type or never ends cannot pass. To add an exercise, see
CONTRIBUTING.md, "Code-along exercises": ``@exercise`` registers its check, so that
``scripts/make_code_along.py`` can write the stub and the expected "not done yet"
line into the learners' notebook.
"""

from .harness import CARRY_ON, EXERCISES, TIME_LIMIT, Exercise, Returns, TimeLimit, Wrong, by_function, judge  # noqa: F401
from .ep01 import TINY_MEAN, TINY_STD, check_fgsm, check_iterated_fgsm, tiny_pixel_classifier  # noqa: F401
from .ep02 import check_integrated_gradients_by_hand, check_vanilla_gradient, tiny_smooth_cnn  # noqa: F401
from .ep03 import check_mass_inside, check_pointing_game, patch_scoring_example  # noqa: F401
from .ep04 import check_activations_and_gradients, check_gradcam_map, check_gradcam_weights, tiny_cnn  # noqa: F401
from .ep05 import check_leave_one_out, check_lime_kernel, toy_predict_proba  # noqa: F401
from .ep06 import check_flipped_share, check_swap_estimate  # noqa: F401
from .ep07 import check_control_labels, check_masked_mean_pool  # noqa: F401
from .ep08 import check_restore_hook, check_restored_logits, toy_language_model  # noqa: F401
from .ep09 import check_normalised_recovery, check_patched_logits, toy_token_model  # noqa: F401
from .ep10 import check_removal_influence, check_tracin_score  # noqa: F401
