"""Build an offline preview of the lesson website with pandoc, the Workbench's own engine.

    python scripts/build_site.py      # writes build/site/; open build/site/index.html

The preview follows config.yaml: the home page, the episodes in teaching order,
then the learners', instructors' and profile pages. Workbench divs are styled as
boxes, solutions fold away, and the notebooks' figures are included. It is a
preview, not the Workbench's exact look: the published site is built by
sandpaper from the same Markdown.
"""

import html
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "site"
ASSETS = Path(__file__).resolve().parent / "site"


def pandoc_path():
    try:
        import pypandoc
    except ImportError:
        sys.exit("pandoc is missing: `pip install pypandoc-binary==1.17` (make setup installs it).")
    return pypandoc.get_pandoc_path()


def split_front_matter(text):
    if text.startswith("---"):
        end = text.index("\n---", 3)
        return yaml.safe_load(text[3:end]) or {}, text[end + 4:]
    return {}, text


def lesson_pages(config):
    """(source path, output name, section) for every page, in the order the site lists them."""
    pages = [(ROOT / "index.md", "index.html", None)]
    for section in ("episodes", "learners", "instructors", "profiles"):
        for name in config.get(section) or []:
            pages.append((ROOT / section / name, Path(name).stem + ".html", section))
    return pages


def navigation(pages, titles):
    parts = []
    for section, heading, tag in (("episodes", "Episodes", "ol"), ("learners", "Learners", "ul"),
                                  ("instructors", "Instructors", "ul"), ("profiles", "Profiles", "ul")):
        items = [f'<li><a href="{out}">{html.escape(titles[out])}</a></li>'
                 for _, out, sec in pages if sec == section]
        if items:
            parts.append(f"<h2>{heading}</h2><{tag}>{''.join(items)}</{tag}>")
    return "\n".join(parts)


def build(site=SITE):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    pages = lesson_pages(config)
    titles, bodies = {}, {}
    for source, out, _ in pages:
        meta, body = split_front_matter(source.read_text(encoding="utf-8"))
        titles[out] = str(meta.get("title", source.stem))
        bodies[out] = (meta, body)
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    shutil.copy(ASSETS / "style.css", site / "style.css")
    shutil.copytree(ROOT / "episodes" / "fig", site / "fig")
    menu = navigation(pages, titles)
    pandoc = pandoc_path()
    for source, out, _ in pages:
        meta, body = bodies[out]
        minutes = ""
        if "teaching" in meta:
            minutes = f"Teaching: {meta['teaching']} min. Exercises: {meta['exercises']} min."
        command = [pandoc, "--from", "markdown", "--to", "html5", "--standalone",
                   "--template", str(ASSETS / "template.html"), "--lua-filter", str(ASSETS / "workbench.lua"),
                   "--metadata", f"pagetitle={titles[out]}", "--metadata", f"repository={config['source']}",
                   "--variable", f"lesson={config['title']}", "--variable", f"navigation={menu}",
                   "--variable", f"minutes={minutes}", "--output", str(site / out)]
        result = subprocess.run(command, input=body, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"pandoc failed on {source.relative_to(ROOT)}: {result.stderr.strip()}")
    return site, [out for _, out, _ in pages]


def main():
    site, pages = build()
    print(f"Built {len(pages)} pages in {site.relative_to(ROOT)}/; open {site.relative_to(ROOT)}/index.html")


if __name__ == "__main__":
    main()
