"""Time the lesson's Integrated Gradients against Captum's, at equal steps and equal batch size.

    python scripts/benchmark_ig.py                    # 64 steps, 16 points per batch, 3 repeats
    python scripts/benchmark_ig.py --steps 32 --batch-size 8 --repeats 5

Both explain EfficientNet-Lite0's top class for the cat photo with the same
quadrature rule (Gauss-Legendre, Captum's default), the same number of steps and
the same number of path points per forward-backward pass, so both hold the same
activations in memory. Each implementation runs in its own fresh Python process,
so that each process's peak memory (resident set size) is its own. Inside a
process, one warm-up call comes first, then ``--repeats`` timed calls; the script
prints the median wall time, the peak memory, the speed ratio (Captum's time
divided by the lesson's: above 1 means the lesson's is faster) and the largest
difference between the two attribution maps. It exits with 1 if the maps
disagree, so a fast but wrong implementation cannot pass.

Wall times depend on the machine and on what else runs on it: compare the
ratio, and run it on an idle machine. The CPU time of each call (all threads)
is printed too: it is less disturbed by other programs than the wall time.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, resource, statistics, sys, time
import torch
import xai_lesson
xai_lesson.notebook_setup(seed=0)
from xai_lesson import saliency
from xai_lesson.images import load_photo
from xai_lesson.models import load_image_model

which, steps, batch_size, repeats, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
classifier = load_image_model()
model = classifier.model
x = classifier.preprocess(load_photo("cat"))
target = classifier.top_k(x, k=1)[0][0]
if which == "lesson":
    def run():
        return saliency.integrated_gradients(model, x, target, steps=steps, batch_size=batch_size, rule="gausslegendre")
else:
    from captum.attr import IntegratedGradients
    explainer = IntegratedGradients(model)
    def run():
        return explainer.attribute(x, target=target, n_steps=steps, internal_batch_size=batch_size,
                                   method="gausslegendre")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
attributions = run()  # warm-up
times, cpu_times = [], []
for _ in range(repeats):
    start, cpu_start = time.perf_counter(), time.process_time()
    attributions = run()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
torch.save(attributions.detach(), out)
print(json.dumps({"median_s": statistics.median(times), "times_s": times,
                  "median_cpu_s": statistics.median(cpu_times),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_before_mb": before / 1024}))
"""


def measure(which, args, out):
    result = subprocess.run([sys.executable, "-c", WORKER, which, str(args.steps), str(args.batch_size),
                             str(args.repeats), str(out)], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"the {which} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="path points per forward-backward pass")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as folder:
        results = {which: measure(which, args, Path(folder) / f"{which}.pt") for which in ("lesson", "captum")}
        lesson_map = torch.load(Path(folder) / "lesson.pt", weights_only=True)
        captum_map = torch.load(Path(folder) / "captum.pt", weights_only=True)
    difference = (lesson_map - captum_map).abs().max().item()
    scale = captum_map.abs().max().item()
    print(f"Integrated Gradients, EfficientNet-Lite0, cat photo: {args.steps} steps (Gauss-Legendre), "
          f"{args.batch_size} points per batch, median of {args.repeats}")
    for which, result in results.items():
        times = ", ".join(f"{t:.2f}" for t in result["times_s"])
        print(f"  {which:7s} median {result['median_s']:6.2f} s  (runs: {times}; CPU time {result['median_cpu_s']:.2f} s)"
              f"  peak memory {result['peak_mb']:6.0f} MB")
    ratio = results["captum"]["median_s"] / results["lesson"]["median_s"]
    cpu_ratio = results["captum"]["median_cpu_s"] / results["lesson"]["median_cpu_s"]
    print(f"speed ratio, Captum time / lesson time: {ratio:.2f} wall, {cpu_ratio:.2f} CPU "
          "(above 1: the lesson's IG is faster; on a busy machine trust the CPU ratio more)")
    print(f"largest difference between the two maps: {difference:.2e} (largest attribution {scale:.2e})")
    if difference > 1e-4 * scale:
        sys.exit("the lesson's IG and Captum's disagree")


if __name__ == "__main__":
    main()
