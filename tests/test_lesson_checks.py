"""The lesson checks: the real lesson passes, and each rule catches a broken example.

Only the rules pegboard (the Workbench validator) lacks live in lesson_check.py; the
heading, div-name, link and alt-text rules are pegboard's (`../shared/workbench/check .`)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("lesson_check", ROOT / "scripts" / "lesson_check.py")
lesson_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lesson_check)

GOOD = """---
title: "A good episode"
teaching: 10
exercises: 5
---

:::::::::::::: questions

- Why?

::::::::::::::

:::::::::::::: objectives

- Learn.

::::::::::::::

## A section

Read [the introduction](01-intro.md) first.

![A figure.](fig/plot.png){alt='A line rising from left to right.'}

```python
print(1)
```

```output
1
```

### A subsection

::::::::::::::::: challenge

## Challenge 1: Try it

Do it.

:::::::: solution

Done.

::::::::

:::::::::::::::::

:::::::::::::: keypoints

- Done.

::::::::::::::
"""


@pytest.fixture
def episode_dir(tmp_path):
    (tmp_path / "fig").mkdir()
    (tmp_path / "fig" / "plot.png").write_bytes(b"png")
    (tmp_path / "01-intro.md").write_text("intro")
    return tmp_path


def rules(text, folder):
    path = folder / "02-good.md"
    path.write_text(text)
    return {problem.rule for problem in lesson_check.check_markdown(text, path, episode=True)}


def test_the_good_example_passes(episode_dir):
    assert rules(GOOD, episode_dir) == set()


BROKEN = {
    "solution outside challenge": ("## A section", ":::: solution\n\nx\n\n::::\n\n## A section", "nesting"),
    "hint outside challenge": ("## A section", ":::: hint\n\nx\n\n::::\n\n## A section", "nesting"),
    "challenge without solution": (":::::::: solution\n\nDone.\n\n::::::::\n", "Done.\n", "nesting"),
    "no keypoints": (":::::::::::::: keypoints\n\n- Done.\n\n::::::::::::::\n", "", "sections"),
    "no questions": (":::::::::::::: questions\n\n- Why?\n\n::::::::::::::\n", "", "sections"),
    "no objectives": (":::::::::::::: objectives\n\n- Learn.\n\n::::::::::::::\n", "", "sections"),
    "no front matter": ('---\ntitle: "A good episode"\nteaching: 10\nexercises: 5\n---\n', "", "front-matter"),
    "no title": ('title: "A good episode"\n', "", "front-matter"),
    "no teaching minutes": ("teaching: 10\n", "", "front-matter"),
    "minutes not a number": ("exercises: 5", "exercises: five", "front-matter"),
    "code without language": ("```python", "```", "code-lang"),
    "apostrophe in alt text": ("{alt='A line rising", "{alt='The model's line rising", "figures"),
    "brackets in a caption": ("![A figure.]", "![A figure [left].]", "figures"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_rule_catches_a_broken_episode(case, episode_dir):
    old, new, rule = BROKEN[case]
    assert old in GOOD, f"the broken example {case!r} no longer applies to GOOD"
    assert rule in rules(GOOD.replace(old, new, 1), episode_dir)


def test_keypoints_must_come_last(episode_dir):
    keypoints = ":::::::::::::: keypoints\n\n- Done.\n\n::::::::::::::\n"
    moved = GOOD.replace(keypoints, "").replace("## A section", keypoints + "\n## A section")
    assert "sections" in rules(moved, episode_dir)


SOURCE = "https://github.com/example/lesson"


def make_lesson(root, episodes_listed, episode_files, notebook_stems):
    (root / "episodes").mkdir()
    (root / "notebooks").mkdir()
    (root / "config.yaml").write_text(f"source: '{SOURCE}'\nbranch: 'main'\nepisodes:\n"
                                      + "".join(f"- {e}\n" for e in episodes_listed))
    for name in episode_files:
        stem = Path(name).stem
        (root / "episodes" / name).write_text(GOOD.replace("(01-intro.md)", f"({SOURCE}/blob/main/notebooks/{stem}.ipynb)")
                                              .replace("![A figure.](fig/plot.png){alt='A line rising "
                                                       "from left to right.'}", ""))
    for stem in notebook_stems:
        cell = {"cell_type": "markdown", "metadata": {},
                "source": [f"Accompanies [the episode](../episodes/{stem}.md)."]}
        printed = {"cell_type": "code", "metadata": {}, "source": ["print(1)"], "execution_count": 1,
                   "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]}
        (root / "notebooks" / f"{stem}.ipynb").write_text(json.dumps({"cells": [cell, printed]}))
    return root


def test_a_consistent_small_lesson_passes(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    assert lesson_check.check_lesson(lesson) == []


def test_config_must_list_every_episode(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md", "02-b.md"], ["01-a", "02-b"])
    assert [p.rule for p in lesson_check.check_lesson(lesson)] == ["config"]


def test_config_must_not_list_missing_episodes(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md", "02-b.md"], ["01-a.md"], ["01-a"])
    assert [p.rule for p in lesson_check.check_lesson(lesson)] == ["config"]


def test_every_episode_needs_a_notebook_and_back(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a", "02-b"])
    assert [p.rule for p in lesson_check.check_lesson(lesson)] == ["pairing"]
    (lesson / "notebooks" / "02-b.ipynb").unlink()
    (lesson / "notebooks" / "01-a.ipynb").unlink()
    assert "pairing" in [p.rule for p in lesson_check.check_lesson(lesson)]


def test_episode_must_link_its_notebook_through_the_repository(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    episode = lesson / "episodes" / "01-a.md"
    # A relative link works on GitHub, but the built site has no notebooks/ folder.
    episode.write_text(episode.read_text().replace(f"{SOURCE}/blob/main/notebooks/", "../notebooks/"))
    problems = lesson_check.check_lesson(lesson)
    assert [p.rule for p in problems] == ["pairing"] and f"{SOURCE}/blob/main/notebooks/01-a.ipynb" in problems[0].message


def test_config_must_name_the_repository(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    config = lesson / "config.yaml"
    config.write_text(config.read_text().replace(f"source: '{SOURCE}'\n", ""))
    assert "config" in [p.rule for p in lesson_check.check_lesson(lesson)]


def test_notebook_must_name_its_episode(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    notebook = lesson / "notebooks" / "01-a.ipynb"
    notebook.write_text(notebook.read_text().replace("../episodes/01-a.md", "somewhere.md"))
    assert [p.rule for p in lesson_check.check_lesson(lesson)] == ["pairing"]


def test_episode_outputs_must_come_from_the_notebook(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    episode = lesson / "episodes" / "01-a.md"
    episode.write_text(episode.read_text().replace("```output\n1\n```", "```output\n2\n```"))
    problems = lesson_check.check_lesson(lesson)
    assert [p.rule for p in problems] == ["outputs"] and "'2' is not in the output" in problems[0].message


def write_schedule(lesson, rows):
    (lesson / "instructors").mkdir(exist_ok=True)
    table = "| start | what | minutes |\n|---|---|---|\n" + "".join(f"| {r} |\n" for r in rows)
    (lesson / "instructors" / "schedule.md").write_text("---\ntitle: Schedule\n---\n\n" + table)


def test_a_schedule_that_adds_up_passes(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    write_schedule(lesson, ["09:00 | Welcome | 10", "09:10 | [A](../episodes/01-a.md) | 15", "09:25 | Break | 5"])
    assert lesson_check.check_lesson(lesson) == []


@pytest.mark.parametrize("rows, message", [
    (["09:00 | [A](../episodes/01-a.md) | 20"], "teaching + exercises add up to 15"),
    (["09:00 | Welcome | 10", "09:15 | [A](../episodes/01-a.md) | 15"], "the row before ends at 09:10"),
    (["09:00 | Welcome | 10"], "does not schedule 01-a.md"),
])
def test_the_schedule_must_match_the_episodes(tmp_path, rows, message):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    write_schedule(lesson, rows)
    problems = lesson_check.check_lesson(lesson)
    assert [p.rule for p in problems] == ["schedule"] and message in problems[0].message


def test_the_lesson_passes_every_check():
    problems = lesson_check.check_lesson(ROOT)
    assert not problems, "\n".join(map(str, problems))


def add_code_cell(lesson, source, printed="", tags=()):
    notebook_path = lesson / "notebooks" / "01-a.ipynb"
    notebook = json.loads(notebook_path.read_text())
    outputs = [{"output_type": "stream", "name": "stdout", "text": [printed]}] if printed else []
    notebook["cells"].append({"cell_type": "code", "metadata": {"tags": list(tags)}, "source": [source],
                              "execution_count": 2, "outputs": outputs})
    notebook_path.write_text(json.dumps(notebook))


def test_a_bare_assert_outside_a_claims_cell_is_refused(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    add_code_cell(lesson, "x = 1\nassert x == 1, 'x is one'")
    problems = lesson_check.check_lesson(lesson)
    assert [p.rule for p in problems] == ["claims"] and "bare `assert`" in problems[0].message


def test_a_claims_cell_passes_and_its_check_line_may_be_shown(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    add_code_cell(lesson, "claims.expect(x == 1, 'x is one')", printed="\u2714 x is one\n", tags=["claims"])
    episode = lesson / "episodes" / "01-a.md"
    episode.write_text(episode.read_text().replace("```output\n1\n```", "```output\n1\n\u2714 x is one\n```"))
    assert lesson_check.check_lesson(lesson) == []


@pytest.mark.parametrize("source, printed, message", [
    ("print('x')", "x\n", "checks no claim"),
    ("claims.expect(x == 1, 'x is one')\nprint(x)", "\u2714 x is one\n1\n", "prints only its \u2714 lines"),
])
def test_a_claims_cell_holds_claims_and_prints_nothing_else(tmp_path, source, printed, message):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    add_code_cell(lesson, source, printed=printed, tags=["claims"])
    problems = lesson_check.check_lesson(lesson)
    assert "claims" in [p.rule for p in problems] and any(message in p.message for p in problems)


def test_a_check_line_the_notebook_never_printed_is_refused(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    episode = lesson / "episodes" / "01-a.md"
    episode.write_text(episode.read_text() + "\n\u2714 a claim nobody checked\n")
    assert [p.rule for p in lesson_check.check_lesson(lesson)] == ["claims"]


def test_the_summary_page_links_every_episode(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md", "02-b.md"], ["01-a.md", "02-b.md"], ["01-a", "02-b"])
    (lesson / "index.md").write_text("---\nsite: sandpaper::sandpaper_site\n---\n\nCovers [A](episodes/01-a.md).\n")
    problems = lesson_check.check_lesson(lesson)
    assert [p.rule for p in problems] == ["summary"] and "episodes/02-b.md" in problems[0].message
    (lesson / "index.md").write_text((lesson / "index.md").read_text() + "And [B](episodes/02-b.md).\n")
    assert lesson_check.check_lesson(lesson) == []


def write_minutes(lesson, table):
    (lesson / "instructors").mkdir(exist_ok=True)
    (lesson / "instructors" / "instructor-notes.md").write_text("---\ntitle: Notes\n---\n\n## Timing\n\n" + table)


GOOD_MINUTES = """### Episode 01, A: 15 minutes

| section | minutes | when short |
|---|---:|---|
| The idea | 10 | show the figure |
| Challenge 1 | 5 | |
| **Core** | **15** | |

"Going further" (not counted): nothing.
"""


def test_a_minutes_table_that_adds_up_passes(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    write_minutes(lesson, GOOD_MINUTES)
    assert lesson_check.check_lesson(lesson) == []


@pytest.mark.parametrize("old, new, message", [
    ("| Challenge 1 | 5 |", "| Challenge 1 | 6 |", "add up to 16, not 15"),
    ("**Core** | **15**", "**Core** | **14**", "core row of 01-a.md says 14"),
    ("| **Core** | **15** | |\n", "", "has no '| **Core**"),
    ("### Episode 01, A: 15 minutes", "### Episode 02, A: 15 minutes", "has no minutes table for 01-a.md"),
])
def test_the_minutes_table_must_add_up(tmp_path, old, new, message):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    assert old in GOOD_MINUTES
    write_minutes(lesson, GOOD_MINUTES.replace(old, new))
    problems = lesson_check.check_lesson(lesson)
    assert [p.rule for p in problems] == ["minutes"] and message in problems[0].message, problems


def test_the_minutes_must_match_the_episode_and_fit_the_core_limit(tmp_path):
    lesson = make_lesson(tmp_path, ["01-a.md"], ["01-a.md"], ["01-a"])
    long = GOOD_MINUTES.replace("A: 15 minutes", "A: 95 minutes").replace("| The idea | 10 |", "| The idea | 90 |") \
        .replace("**15**", "**95**")
    write_minutes(lesson, long)
    messages = [p.message for p in lesson_check.check_lesson(lesson) if p.rule == "minutes"]
    assert any("teaching + exercises add up to 15" in m for m in messages), messages
    assert any("more than 90" in m for m in messages), messages


def test_the_schedule_is_generated_from_the_minutes():
    spec = importlib.util.spec_from_file_location("make_schedule", ROOT / "scripts" / "make_schedule.py")
    make_schedule = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_schedule)
    written = (ROOT / "instructors" / "schedule.md").read_text(encoding="utf-8")
    assert written == make_schedule.render(), "instructors/schedule.md is out of date: run scripts/make_schedule.py"


def test_an_escaped_quote_in_alt_text_passes(episode_dir):
    text = GOOD.replace("{alt='A line rising", "{alt='The model\\'s line rising", 1)
    assert text != GOOD
    assert "figures" not in rules(text, episode_dir)
