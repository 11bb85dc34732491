"""Run every notebook of the lesson in teaching order and report time and peak memory.

    python scripts/run_lesson.py              # executed copies go to build/executed/, figures to build/figures/
    python scripts/run_lesson.py --in-place   # (authors) write the outputs back into notebooks/ and episodes/fig/
    python scripts/run_lesson.py 02-saliency-maps   # only the named notebooks

Each notebook runs in its own process with the offline defaults (no model hub, no
dataset hub). The table, printed and written to build/lesson-report.md, shows
each notebook's status, wall time and the kernel's peak resident memory, next to
the budgets in the notebook's metadata (``xai_lesson.time_budget_s`` and
``xai_lesson.memory_budget_mb``), and its three slowest cells (index among all
cells, first line, seconds), so that authors see where the time goes. A notebook
over budget is flagged, not failed: a learner's laptop may be slower than the
machine the budgets were set on.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = {"XAI_LESSON_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
DEFAULT_BUDGET = {"time_budget_s": 120, "memory_budget_mb": 2000}


SLOWEST = 3


def _timestamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def slowest_cells(notebook, count=SLOWEST):
    """The ``count`` slowest code cells as (cell index, first line, seconds), slowest first.

    Reads the timestamps nbclient records in each cell's ``metadata.execution``
    (from "iopub.status.busy" to "iopub.status.idle"); cells without them are skipped."""
    timed = []
    for index, cell in enumerate(notebook["cells"]):
        stamps = cell.get("metadata", {}).get("execution", {})
        if cell.get("cell_type") != "code" or not {"iopub.status.busy", "iopub.status.idle"} <= set(stamps):
            continue
        seconds = (_timestamp(stamps["iopub.status.idle"]) - _timestamp(stamps["iopub.status.busy"])).total_seconds()
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        first = next((line.strip() for line in source.splitlines() if line.strip()), "")
        timed.append((index, first[:40], seconds))
    return sorted(timed, key=lambda item: (-item[2], item[0]))[:count]


def describe_slowest(cells):
    """One table cell: `cell 17 (texts = ...) 34.3 s; ...`."""
    return "; ".join(f"cell {index} (`{first.replace('|', '/').replace('`', '')}`) {seconds:.1f} s"
                     for index, first, seconds in cells) or "-"


def lesson_notebooks():
    """Notebook paths in the order config.yaml lists the episodes."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    return [ROOT / "notebooks" / (Path(episode).stem + ".ipynb") for episode in config["episodes"]]


def execute_one(notebook, output):
    """Child process: execute one notebook, print a JSON line with its peak memory."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    start = time.perf_counter()
    error = None
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
    except Exception as exc:  # report the failing cell instead of a traceback wall
        error = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[-1][:200]}"
    seconds = time.perf_counter() - start
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_mb = peak_kb / (1024 * 1024 if sys.platform == "darwin" else 1024)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "error": error, "slowest": slowest_cells(nb)}))


def run(notebook, in_place):
    output = notebook if in_place else ROOT / "build" / "executed" / notebook.name
    # Only the authors' in-place run refreshes the committed figures in episodes/fig/.
    figures = {} if in_place else {"XAI_LESSON_FIGURE_DIR": str(ROOT / "build" / "figures")}
    result = subprocess.run([sys.executable, __file__, "--child", str(notebook), str(output)],
                            capture_output=True, text=True, env={**os.environ, **OFFLINE, **figures})
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return {"seconds": float("nan"), "peak_mb": float("nan"), "slowest": [],
                "error": (result.stderr.strip().splitlines() or ["runner failed"])[-1]}
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names to run (default: all, in order)")
    parser.add_argument("--in-place", action="store_true", help="write outputs into notebooks/")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        execute_one(Path(args.child[0]), Path(args.child[1]))
        return

    notebooks = lesson_notebooks()
    if args.names:
        notebooks = [ROOT / "notebooks" / (Path(name).stem + ".ipynb") for name in args.names]
        missing = [nb.name for nb in notebooks if not nb.exists()]
        if missing:
            sys.exit(f"No notebook {missing} in notebooks/.")

    header = ("| notebook | status | wall time (s) | budget (s) | peak memory (MB) | budget (MB) "
              f"| {SLOWEST} slowest cells |")
    rows = [header, "|---|---|---:|---:|---:|---:|---|"]
    print(header)
    failed = 0
    total = 0.0
    for notebook in notebooks:
        meta = json.loads(notebook.read_text())["metadata"].get("xai_lesson", {})
        budget = {**DEFAULT_BUDGET, **meta}
        result = run(notebook, args.in_place)
        if result["error"]:
            status, failed = f"FAILED: {result['error']}", failed + 1
        else:
            notes = [label for label, over in (
                ("over time budget", result["seconds"] > budget["time_budget_s"]),
                ("over memory budget", result["peak_mb"] > budget["memory_budget_mb"])) if over]
            status = "ok" + (f" ({', '.join(notes)})" if notes else "")
        total += result["seconds"]
        row = (f"| {notebook.name} | {status} | {result['seconds']:.1f} | {budget['time_budget_s']} "
               f"| {result['peak_mb']:.0f} | {budget['memory_budget_mb']} | {describe_slowest(result['slowest'])} |")
        rows.append(row)
        print(row, flush=True)
    summary = f"{len(notebooks) - failed} of {len(notebooks)} notebooks ran; total {total:.0f} s."
    print(summary)
    report = ROOT / "build" / "lesson-report.md"
    report.parent.mkdir(exist_ok=True)
    report.write_text("\n".join(rows + ["", summary]) + "\n")
    print(f"Report written to {report.relative_to(ROOT)}.")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
