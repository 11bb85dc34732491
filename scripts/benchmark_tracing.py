"""Time the straightforward and the fast causal tracing on the same prompt and noise.

    python scripts/benchmark_tracing.py                       # SmolLM2, "The capital of Japan is"
    python scripts/benchmark_tracing.py --kind mlp --samples 2
    python scripts/benchmark_tracing.py --prompt "The mother tongue of Leo Tolstoy is" --subject "Leo Tolstoy"

The straightforward version runs one forward pass per (layer, token, noise sample),
as the code of Meng et al. (2022) does. The fast version batches the restorations
and skips the work they cannot change (see ``xai_lesson.tracing``). Both use the
same noise draws, so their scores must agree; the script checks that they do
(max abs diff <= 1e-4) and prints the speed-up. Exit status 1 means they disagree.
"""

import argparse
import sys
import time

import numpy as np
import torch

from xai_lesson.models import load_causal_lm
from xai_lesson.tracing import KINDS, causal_trace

TOLERANCE = 1e-4


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M", help="a name xai_lesson.models.load_causal_lm knows")
    parser.add_argument("--prompt", default="The capital of Japan is")
    parser.add_argument("--subject", default="Japan")
    parser.add_argument("--kind", default="hidden", choices=KINDS)
    parser.add_argument("--samples", type=int, default=3, help="noise samples (the same draws for both versions)")
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()

    model, tokenizer = load_causal_lm(args.model)
    options = dict(kind=args.kind, samples=args.samples, window=args.window, seed=0)
    causal_trace(model, tokenizer, args.prompt, args.subject, **options)  # warm-up: first calls are slower
    times, results = {}, {}
    for method in ("straightforward", "fast"):
        start = time.perf_counter()
        results[method] = causal_trace(model, tokenizer, args.prompt, args.subject, method=method, **options)
        times[method] = time.perf_counter() - start
    slow, fast = results["straightforward"], results["fast"]
    n_layers, n_tokens = slow.scores.shape
    difference = float(np.abs(slow.scores - fast.scores).max())
    print(f"model {args.model}, prompt {args.prompt!r}, subject {args.subject!r}, answer {fast.answer!r}")
    print(f"kind {args.kind}, {args.samples} noise samples (noise {fast.noise:.4f}), window {args.window}, "
          f"{n_layers} layers x {n_tokens} tokens, torch threads {torch.get_num_threads()}")
    print(f"straightforward: {times['straightforward']:.2f} s ({n_layers * n_tokens * args.samples} forward passes)")
    print(f"fast:            {times['fast']:.2f} s")
    print(f"max abs difference of the scores: {difference:.2e} (tolerance {TOLERANCE:.0e})")
    print(f"speed-up: {times['straightforward'] / times['fast']:.1f}x")
    if difference > TOLERANCE:
        print("The two versions disagree.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
