"""Check what the Carpentries Workbench's own validator does not: the lesson's rules on top.

    python scripts/lesson_check.py        # prints one line per problem; exit 1 if any

The Workbench validator (the R package pegboard, run by `sandpaper::validate_lesson()`
or `../shared/workbench/check .`) already checks headings (level 2 first, no level 1,
no skipped level, unique), fenced-div names and balance, links and images (the file
or anchor exists, HTTPS, descriptive link text) and alt text. Those rules live there
only. This script keeps the rules pegboard lacks, each with a short name printed with
every problem it finds:

  nesting     solution and hint divs sit inside a challenge; each challenge has a solution
  sections    questions, objectives and keypoints exist; the first two lead, keypoints is last
  front-matter  an episode's front matter has title, teaching and exercises (minutes)
  code-lang   every code block names its language
  config      config.yaml's episodes and the files in episodes/ match, both ways
  pairing     episodes and notebooks pair one to one, and link to each other (the
              episode through the repository, so the link also works on the built site)
  outputs     every line of an episode's ```output block is a line its notebook printed
  schedule    instructors/schedule.md gives each episode its teaching + exercises minutes,
              every listed episode appears in it, and each row starts when the one before ends
  minutes     the instructor notes give each episode a minutes table: a heading
              `### Episode NN, <title>: T minutes`, rows `| section | m | when short |` that add
              up to T, a `| **Core** | **T** |` row, T = the episode's teaching + exercises,
              and T at most 90 (optional depth goes to the episode's "Going further")
  summary     index.md, the lesson's summary page, links to every episode config.yaml lists,
              so that its list of what the lesson covers stays true as episodes are added
  figures     a figure's caption has no square brackets and its alt text holds no quote
              of the kind that delimits it (an apostrophe ends alt='...' early): the site
              build (pandoc) then drops or garbles the figure, which pegboard does not notice
  claims      a notebook checks its claims with `claims.expect` in cells tagged `claims`, not
              with bare `assert` lines in the learner's way; a `claims` cell prints only
              ✔ lines; every ✔ line an episode shows is one its notebook printed
"""

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

NESTED_IN_CHALLENGE = {"solution", "hint"}
DIV_LINE = re.compile(r"^(:{3,})\s*(?:\{\.?([\w-]+)[^}]*\}|([\w-]+))?\s*$")
FIGURE = re.compile(r"!\[(?P<caption>.*)\]\((?P<path>[^)\s]+)\)(?P<attrs>\{.*\})?")
ALT = re.compile(r"alt=(?P<quote>['\"])")
SCHEDULE_ROW = re.compile(r"^\|\s*(\d{1,2}):(\d{2})\s*\|(.*)\|\s*(\d+)\s*\|\s*$")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self):
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


def _split_front_matter(text):
    """Return (front matter dict or None, number of lines it takes, body lines)."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        for end in range(1, len(lines)):
            if lines[end].strip() == "---":
                meta = yaml.safe_load("\n".join(lines[1:end])) or {}
                return meta, end + 1, lines[end + 1:]
    return None, 0, lines


def _prose_lines(lines, offset):
    """(line number, text) for lines outside fenced code blocks; also report code fences."""
    in_code = False
    prose, fences = [], []
    for number, line in enumerate(lines, start=offset + 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if not in_code:
                fences.append((number, stripped[3:].strip()))
            in_code = not in_code
            continue
        if not in_code:
            prose.append((number, line))
    return prose, fences


def check_markdown(text, path, episode=False, root=None):
    """All per-file rules on one Markdown file. ``episode`` adds the episode-only rules."""
    path = Path(path)
    name = str(path if root is None else path.relative_to(root))
    problems = []

    def report(line, rule, message):
        problems.append(Problem(name, line, rule, message))

    meta, offset, body = _split_front_matter(text)
    prose, fences = _prose_lines(body, offset)

    if episode:
        if meta is None:
            report(1, "front-matter", "an episode starts with YAML front matter between --- lines")
        else:
            for key in ("title", "teaching", "exercises"):
                if key not in meta:
                    report(1, "front-matter", f"front matter lacks '{key}'")
            for key in ("teaching", "exercises"):
                if key in meta and (not isinstance(meta[key], int) or meta[key] < 0):
                    report(1, "front-matter", f"'{key}' must be whole minutes, got {meta[key]!r}")

    for number, language in fences:
        if not language:
            report(number, "code-lang", "code block has no language: write ```python, ```bash or ```output")

    for number, line in prose:
        for match in FIGURE.finditer(line):
            if re.search(r"[\[\]]", match.group("caption")):
                report(number, "figures", "a figure caption with square brackets: the site build cannot "
                       "parse it; write the words without brackets")
            attrs = match.group("attrs") or ""
            alt = ALT.search(attrs)
            if alt is None:
                continue  # pegboard reports a missing alt text
            quote = alt.group("quote")
            inner = attrs[alt.end():].replace("\\" + quote, "")  # an escaped quote is fine
            closing = inner.rfind(quote)
            if closing == -1 or quote in inner[:closing]:
                report(number, "figures", f"the alt text holds a {quote} inside {quote}...{quote}: pandoc ends the "
                       "alt text there and drops the figure; reword it or escape it with a backslash")

    # Fenced divs: nesting and order (pegboard checks their names and balance).
    stack, order = [], []
    challenge_has_solution = {}
    for number, line in prose:
        match = DIV_LINE.match(line.strip())
        if not match:
            continue
        div = match.group(2) or match.group(3)
        if div is None:
            if stack:
                stack.pop()
            continue
        if div in NESTED_IN_CHALLENGE:
            if "challenge" not in [d for d, _ in stack]:
                report(number, "nesting", f"a '{div}' div must sit inside a 'challenge' div")
            else:
                challenge_has_solution[max(n for d, n in stack if d == "challenge")] = True
        if div == "challenge":
            challenge_has_solution.setdefault(number, False)
        if not stack:
            order.append((number, div))
        stack.append((div, number))
    for number, has_solution in challenge_has_solution.items():
        if not has_solution:
            report(number, "nesting", "this challenge has no solution div")

    if episode:
        top_level = [div for _, div in order]
        for section in ("questions", "objectives", "keypoints"):
            if section not in top_level:
                report(1, "sections", f"the episode has no '{section}' div")
        if top_level[:2] not in (["questions", "objectives"], ["objectives", "questions"]):
            report(order[0][0] if order else 1, "sections",
                   "the 'questions' and 'objectives' divs come first")
        if top_level and top_level[-1] != "keypoints":
            report(order[-1][0], "sections", "the 'keypoints' div comes last")

    return problems


def check_lesson(root):
    """Every rule over the whole lesson at ``root``. Returns a list of problems."""
    root = Path(root)
    problems = []
    episodes_dir = root / "episodes"
    config = yaml.safe_load((root / "config.yaml").read_text()) or {}
    listed = list(config.get("episodes") or [])
    present = sorted(p.name for p in episodes_dir.glob("*.md"))
    for name in listed:
        if name not in present:
            problems.append(Problem("config.yaml", 1, "config", f"lists {name}, which is not in episodes/"))
    for name in present:
        if name not in listed:
            problems.append(Problem(f"episodes/{name}", 1, "config", "is not listed in config.yaml's episodes"))
    for section in ("learners", "instructors", "profiles"):
        for name in config.get(section) or []:
            if not (root / section / name).exists():
                problems.append(Problem("config.yaml", 1, "config", f"lists {section}/{name}, which does not exist"))

    if not config.get("source"):
        problems.append(Problem("config.yaml", 1, "config", "has no 'source': the repository's URL"))
    # Where the built site's pages find the notebooks: notebooks/ is not part of the site.
    notebook_url = f"{str(config.get('source', '')).rstrip('/')}/blob/{config.get('branch', 'main')}/notebooks/"
    notebooks = sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))
    for stem in sorted({Path(n).stem for n in present} - set(notebooks)):
        problems.append(Problem(f"episodes/{stem}.md", 1, "pairing", f"has no notebook notebooks/{stem}.ipynb"))
    for stem in sorted(set(notebooks) - {Path(n).stem for n in present}):
        problems.append(Problem(f"notebooks/{stem}.ipynb", 1, "pairing", f"has no episode episodes/{stem}.md"))

    for path in sorted(episodes_dir.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        problems += check_markdown(text, path, episode=True, root=root)
        notebook = root / "notebooks" / f"{path.stem}.ipynb"
        if notebook.exists():
            problems += check_pair(text, notebook, path.stem, notebook_url)
            problems += check_outputs(text, notebook, path.stem)
            problems += check_claims(text, notebook, path.stem)
    if (root / "index.md").exists():
        index = (root / "index.md").read_text(encoding="utf-8")
        problems += check_markdown(index, root / "index.md", root=root)
        for name in listed:
            if f"](episodes/{name})" not in index:
                problems.append(Problem("index.md", 1, "summary", f"the summary page does not link to episodes/{name}: "
                                        "add it to the list of what the lesson covers"))
    for folder in ("learners", "instructors", "profiles"):
        for path in sorted((root / folder).glob("*.md")):
            problems += check_markdown(path.read_text(encoding="utf-8"), path, root=root)
    notes = root / "instructors" / "instructor-notes.md"
    if notes.exists():
        problems += check_minutes(notes.read_text(encoding="utf-8"), listed, episodes_dir)
    schedule = root / "instructors" / "schedule.md"
    if schedule.exists():
        problems += check_schedule(schedule.read_text(encoding="utf-8"), listed, episodes_dir)
    return problems


def _episode_minutes(path):
    """An episode's teaching + exercises minutes, from its front matter."""
    meta, _, _ = _split_front_matter(path.read_text(encoding="utf-8"))
    return int((meta or {}).get("teaching", 0)) + int((meta or {}).get("exercises", 0))


MINUTES_HEADING = re.compile(r"^### Episode (\d{2}), .*: (\d+) minutes\s*$")
MINUTES_ROW = re.compile(r"^\|(.*?)\|\s*(\*\*)?(\d+)(\*\*)?\s*\|(.*)\|\s*$")
CORE_LIMIT = 90


def check_minutes(text, listed, episodes_dir):
    """Each listed episode has a minutes table in the instructor notes that adds up to its minutes."""
    problems, lines = [], text.splitlines()

    def report(number, message):
        problems.append(Problem("instructors/instructor-notes.md", number, "minutes", message))

    headings = {}
    for number, line in enumerate(lines, 1):
        match = MINUTES_HEADING.match(line)
        if match:
            headings[match[1]] = (number, int(match[2]))
    for name in listed:
        episode_number = name[:2]
        if episode_number not in headings:
            report(1, f"has no minutes table for {name}: add a heading '### Episode {episode_number}, <title>: "
                      "<minutes> minutes' and its table")
            continue
        number, total = headings[episode_number]
        rows, core = [], None
        for offset, line in enumerate(lines[number:], number + 1):
            if line.startswith("#"):
                break
            row = MINUTES_ROW.match(line.strip())
            if not row:
                continue
            if row[1].strip() == "**Core**":
                core = (offset, int(row[3]))
            else:
                rows.append(int(row[3]))
        expected = _episode_minutes(episodes_dir / name)
        if core is None:
            report(number, f"the minutes table of {name} has no '| **Core** | **{total}** | |' row")
        elif core[1] != total:
            report(core[0], f"the core row of {name} says {core[1]} minutes, its heading {total}")
        if sum(rows) != total:
            report(number, f"the rows of {name}'s minutes table add up to {sum(rows)}, not {total}")
        if total != expected:
            report(number, f"gives {name} {total} minutes, but its teaching + exercises add up to {expected}")
        if total > CORE_LIMIT:
            report(number, f"{name}'s core is {total} minutes, more than {CORE_LIMIT}: move optional depth "
                           "to its 'Going further' section")
    return problems


def check_schedule(text, listed, episodes_dir):
    """Schedule rows are `| HH:MM | what | minutes |`; episode rows link to ../episodes/NAME.md."""
    problems, seen, previous_end = [], set(), None

    def report(number, message):
        problems.append(Problem("instructors/schedule.md", number, "schedule", message))

    for number, line in enumerate(text.splitlines(), 1):
        row = SCHEDULE_ROW.match(line.strip())
        if not row:
            previous_end = None if not line.strip().startswith("|") else previous_end
            continue
        start = int(row[1]) * 60 + int(row[2])
        minutes = int(row[4])
        if previous_end is not None and start != previous_end:
            report(number, f"starts at {row[1]}:{row[2]}, but the row before ends at "
                           f"{previous_end // 60:02d}:{previous_end % 60:02d}")
        previous_end = start + minutes
        for name in re.findall(r"\.\./episodes/([\w-]+\.md)", row[3]):
            seen.add(name)
            path = episodes_dir / name
            if not path.exists():
                report(number, f"links to {name}, which is not in episodes/")
                continue
            expected = _episode_minutes(path)
            if minutes != expected:
                report(number, f"gives {name} {minutes} minutes, but its teaching + exercises add up to {expected}")
    for name in listed:
        if name not in seen:
            report(1, f"does not schedule {name}")
    return problems


def notebook_output_lines(notebook_path):
    """Every line the notebook printed (streams and plain-text results), right-stripped."""
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    lines = set()
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain") or ""
            lines.update(line.rstrip() for line in "".join(text).splitlines())
    return lines


def check_outputs(episode_text, notebook_path, stem):
    """Every line of every ```output block in the episode is a line the notebook printed."""
    printed = notebook_output_lines(notebook_path)
    problems = []
    for match in re.finditer(r"^```output\n(.*?)^```", episode_text, flags=re.MULTILINE | re.DOTALL):
        first_line = episode_text.count("\n", 0, match.start()) + 2
        for offset, line in enumerate(match.group(1).splitlines()):
            if line.strip() and line.rstrip() not in printed:
                problems.append(Problem(f"episodes/{stem}.md", first_line + offset, "outputs",
                                        f"{line.strip()[:60]!r} is not in the output of notebooks/{stem}.ipynb: "
                                        "copy outputs from the executed notebook"))
    return problems


CLAIMS_TAG = "claims"
ASSERT_LINE = re.compile(r"^\s*assert\b")
CHECK_MARK = "\N{HEAVY CHECK MARK}"


def check_claims(episode_text, notebook_path, stem):
    """Claim checks sit in cells tagged `claims`, print one ✔ line each, and the episode shows only those."""
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    problems = []
    where = f"notebooks/{stem}.ipynb"
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", ""))
        tagged = CLAIMS_TAG in cell.get("metadata", {}).get("tags", [])
        if not tagged:
            for offset, line in enumerate(source.splitlines()):
                if ASSERT_LINE.match(line):
                    problems.append(Problem(where, 1, "claims",
                                            f"cell {index}, line {offset + 1}: a bare `assert` in a cell the learner "
                                            "reads; move the check to a cell tagged 'claims' as claims.expect(...)"))
            continue
        if "claims.expect(" not in source:
            problems.append(Problem(where, 1, "claims", f"cell {index} is tagged 'claims' but checks no claim"))
        printed = "".join("".join(output.get("text", "")) for output in cell.get("outputs", [])
                          if output.get("output_type") == "stream")
        for line in printed.splitlines():
            if line.strip() and not line.startswith(CHECK_MARK):
                problems.append(Problem(where, 1, "claims", f"cell {index} is tagged 'claims' but prints "
                                        f"{line.strip()[:60]!r}: a claims cell prints only its ✔ lines"))
    printed_lines = notebook_output_lines(notebook_path)
    for number, line in enumerate(episode_text.splitlines(), 1):
        if CHECK_MARK in line and line.strip().startswith(CHECK_MARK) and line.rstrip() not in printed_lines:
            problems.append(Problem(f"episodes/{stem}.md", number, "claims",
                                    f"{line.strip()[:60]!r} is not a ✔ line that notebooks/{stem}.ipynb printed"))
    return problems


def check_pair(episode_text, notebook_path, stem, notebook_url):
    """The episode links to its notebook in the repository, and the notebook names its episode.

    The episode's link is absolute (``notebook_url`` + name) because the built site
    holds no notebooks: a relative ../notebooks/ link works on GitHub but not there."""
    problems = []
    if f"]({notebook_url}{stem}.ipynb)" not in episode_text:
        problems.append(Problem(f"episodes/{stem}.md", 1, "pairing",
                                f"does not link to its notebook as ({notebook_url}{stem}.ipynb)"))
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    first = "".join(notebook["cells"][0]["source"]) if notebook.get("cells") else ""
    if f"../episodes/{stem}.md" not in first:
        problems.append(Problem(f"notebooks/{stem}.ipynb", 1, "pairing",
                                f"its first cell does not link to its episode ../episodes/{stem}.md"))
    return problems


def main():
    root = Path(__file__).resolve().parent.parent
    problems = check_lesson(root)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) found." if problems else "The lesson passes every check.")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
