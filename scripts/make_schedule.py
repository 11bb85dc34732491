"""Write instructors/schedule.md from the episodes' minutes.

    python scripts/make_schedule.py          # rewrite the schedule
    python scripts/make_schedule.py --check  # exit 1 if the schedule is not what this writes

Each episode's minutes are the `teaching` plus `exercises` in its front matter: its core,
which the instructor notes break down section by section (`lesson_check.py`'s `minutes`
rule). The tracks below say which episodes each plan teaches and where the breaks go; the
start times follow from the minutes. Change an episode's minutes, then run this script.
"""

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEDULE = ROOT / "instructors" / "schedule.md"

HEADER = """---
title: 'Schedule'
---

This page is written by `python scripts/make_schedule.py` from the episodes' minutes: do not
edit the tables by hand. An episode's minutes are its *core*, what a live workshop can teach
on 2-core laptops, with about 1.5 times the written time for exercises. Each episode ends
with a "Going further" section that the schedule does not count: optional challenges and
reading for learners who finish early or want homework. The
[instructor notes](instructor-notes.md) give each episode a minutes table, section by
section, with what to skip when short.

Learners should arrive with the set-up done and `python -m xai_lesson.check_setup`
passing. The welcome slot is for the few who could not, and for opening the first
notebook together.
"""

WELCOME = ("Welcome, set-up check, open the first notebook", 15)
BREAK = ("Break", 15)
LUNCH = ("Lunch", 60)

# (heading, text, [(day heading or None, text, slots)]); a slot is an episode number or (what, minutes).
TRACKS = [
    ("The whole lesson: three days",
     "Every episode, in teaching order. Day 3 is a day for now: the episodes on "
     "sparse autoencoders and steering will join it.",
     [("Day 1: images", "The introduction and the three image episodes.",
       [WELCOME, "01", BREAK, "02", LUNCH, "03", BREAK, "04", ("Wrap-up of the day: questions and feedback", 15)]),
      ("Day 2: explaining and testing text models",
       "Start with a recap of gradient × input and leave-one-out: the attacks episode uses both.",
       [("Recap of day 1, open the first notebook", 15), "05", BREAK, "06", LUNCH, "10",
        ("Wrap-up of the day: questions and feedback", 15)]),
      ("Day 3: inside a language model", "Probing, causal tracing, then patching on the same facts.",
       [("Recap of day 2, open the first notebook", 15), "07", BREAK, "08", LUNCH, "09",
        ("Wrap-up: which method for which question; feedback", 20)])]),
    ("One day: images",
     "For an audience that works with images: the introduction and the three image "
     "episodes stand on their own.",
     [(None, "", [WELCOME, "01", BREAK, "02", LUNCH, "03", BREAK, "04", ("Wrap-up and feedback", 15)])]),
    ("Two days: text and language models",
     "For an audience that works with text. Skip the image sections of the introduction "
     "(the occlusion test and the adversarial coffee, with Exercises 1.1 and 1.2), and say in "
     "one sentence what a saliency map is: the text episodes do not build on the image code. "
     "The tables count the introduction in full; the time saved goes to questions.",
     [("Day 1: explaining and testing text models", "",
       [WELCOME, "01", BREAK, "05", LUNCH, "06", ("Wrap-up of the day: questions and feedback", 15)]),
      ("Day 2: inside the models", "",
       [("Recap of day 1, open the first notebook", 15), "07", BREAK, "08", LUNCH, "09",
        ("Wrap-up: which method for which question; feedback", 20)])]),
]


def episodes(root=ROOT):
    """{"01": (file name, title, minutes)} for the episodes config.yaml lists."""
    config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    found = {}
    for name in config["episodes"]:
        text = (root / "episodes" / name).read_text(encoding="utf-8")
        meta = yaml.safe_load(text.split("---")[1])
        found[name[:2]] = (name, meta["title"], int(meta["teaching"]) + int(meta["exercises"]))
    return found


def table(slots, known, start=9 * 60):
    rows = ["| start | what | minutes |", "|---|---|---|"]
    for slot in slots:
        if isinstance(slot, str):
            name, title, minutes = known[slot]
            what = f"[{title}](../episodes/{name})"
        else:
            what, minutes = slot
        rows.append(f"| {start // 60:02d}:{start % 60:02d} | {what} | {minutes} |")
        start += minutes
    return "\n".join(rows), start


def render(root=ROOT):
    known = episodes(root)
    parts = [HEADER]
    scheduled = set()
    for heading, text, days in TRACKS:
        parts.append(f"## {heading}\n\n{text}\n")
        for day, day_text, slots in days:
            scheduled.update(s for s in slots if isinstance(s, str))
            rows, end = table(slots, known)
            intro = f"### {day}\n\n" if day else ""
            ends = f"Ends at {end // 60:02d}:{end % 60:02d}."
            parts.append(f"{intro}{(day_text + ' ') if day_text else ''}{ends}\n\n{rows}\n")
    missing = sorted(set(known) - scheduled)
    if missing:
        raise SystemExit(f"No track schedules episode(s) {', '.join(missing)}: add them to TRACKS.")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the schedule is up to date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if SCHEDULE.read_text(encoding="utf-8") != text:
            print("instructors/schedule.md is out of date: run python scripts/make_schedule.py", file=sys.stderr)
            return 1
        print("instructors/schedule.md is up to date.")
        return 0
    SCHEDULE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEDULE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
