"""The exercise set (book/exercises.md): one labelled group per chapter in book order, every exercise with a
difficulty tag, a time and a collapsed solution; its course path adds up; the numbers it quotes from the committed
grid are the grid's; and its solution code runs, on its own or at the end of its chapter."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "exercises.md"
TEXT = PAGE.read_text()
FLAT = " ".join(TEXT.split())  # the text with its line breaks as spaces, for sentences that wrap

LABEL = re.compile(r"^\(exercises-(\w+)\)=\n## .+$", re.M)
HEADER = re.compile(r"^\*\*(\d+)\.(\d+) ([^*]+)\*\* · (★{1,3}) (quick check|small experiment|project) · (.+)$", re.M)
TAGS = {"★": "quick check", "★★": "small experiment", "★★★": "project"}
MINUTES = re.compile(r"^(\d+) min\b")
DROPDOWN = re.compile(r"^:::\{admonition\} (Solution|Expected outcome)\n:class: dropdown\n(.*?)^:::$", re.S | re.M)
CODE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
IN_CHAPTER = re.compile(r"^# At the end of book/(\w+)\.ipynb")


def book_chapters() -> list[str]:
    """The notebook chapters `_toc.yml` lists, in book order (stems)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [Path(f).name for f in files if (ROOT / f"{f}.ipynb").exists()]


def exercises() -> list[dict]:
    """Each exercise: chapter and exercise number, title, tag, time, minutes, the text up to the next one."""
    marks = [(m.start(), None) for m in LABEL.finditer(TEXT)] + [(m.start(), m) for m in HEADER.finditer(TEXT)]
    bounds = sorted(marks, key=lambda b: b[0]) + [(len(TEXT), None)]
    out = []
    for (start, m), (end, _) in zip(bounds, bounds[1:]):
        if m is not None:
            out.append({"number": (int(m[1]), int(m[2])), "title": m[3], "stars": m[4], "word": m[5],
                        "time": m[6], "body": TEXT[m.end():end]})
    return out


def solution_blocks() -> list[tuple[str, str]]:
    """(exercise number, code) of every ```python block inside a solution or expected-outcome box."""
    found = []
    for ex in exercises():
        for box in DROPDOWN.finditer(ex["body"]):
            found += [("{}.{}".format(*ex["number"]), b) for b in CODE.findall(box[2])]
    return found


def test_every_chapter_has_its_labelled_group_in_book_order():
    chapters = book_chapters()
    assert chapters[:3] == ["data", "flows", "conditional_flows"] and "reproduction" in chapters
    labels = LABEL.findall(TEXT)
    assert labels == chapters, (labels, chapters)  # one group per chapter, in the order of the book
    for stem in chapters:
        assert TEXT.count(f"(exercises-{stem})=") == 1, stem


def test_every_exercise_has_a_title_a_tag_a_time_and_a_collapsed_solution():
    found = exercises()
    assert len(found) >= 40
    # every header line that looks like an exercise is one the parser read (no exercise slips through)
    assert len(re.findall(r"^\*\*\d+\.\d+ ", TEXT, re.M)) == len(found)
    chapters = book_chapters()
    groups = [TEXT.index(f"(exercises-{stem})=") for stem in chapters]
    last = (0, 0)
    for ex in found:
        chapter, number = ex["number"]
        where = TEXT.index(f"**{chapter}.{number} ")
        assert sum(g < where for g in groups) == chapter, ex["number"]  # inside its chapter's group
        assert (chapter, number) == ((last[0], last[1] + 1) if chapter == last[0] else (last[0] + 1, 1)), ex["number"]
        last = (chapter, number)
        assert ex["title"].strip() and len(ex["title"]) < 60, ex["number"]
        assert TAGS[ex["stars"]] == ex["word"], ex["number"]
        assert MINUTES.match(ex["time"]), (ex["number"], ex["time"])
        boxes = DROPDOWN.findall(ex["body"])
        assert len(boxes) == 1 and boxes[0][1].strip(), ex["number"]  # exactly one box, and it is not empty
    assert last[0] == len(chapters)
    stars = {s: sum(ex["stars"] == s for ex in found) for s in TAGS}
    assert all(stars.values()), stars  # quick checks, small experiments and at least one project


def test_exercises_that_train_say_what_they_train():
    for ex in exercises():
        box = DROPDOWN.search(ex["body"])
        if "train" in ex["time"] and "no training" not in ex["time"]:
            assert box[1] == "Expected outcome" or "committed grid" in ex["time"], ex["number"]


def test_the_course_path_lists_existing_exercises_with_their_times():
    minutes = {"{}.{}".format(*ex["number"]): int(MINUTES.match(ex["time"])[1]) for ex in exercises()}
    rows = re.findall(r"^\| \d\. [^|]+ \| ([^|]+) \| (\d+) min \|$", TEXT, re.M)
    assert len(rows) == 3
    for cells, total in rows:
        listed = re.findall(r"(\d+\.\d+) \((\d+)(?: min)?\)", cells)
        assert listed and all(minutes[n] == int(t) for n, t in listed), listed
        assert sum(int(t) for _, t in listed) == int(total) <= 90, (cells, total)


def test_the_numbers_quoted_from_the_committed_grid_are_the_grids():
    from bgad_mini import published, report, summary
    from bgad_mini.config import Config

    if not (ROOT / "data" / "synthetic" / "meta.json").exists():
        pytest.skip("data/synthetic is missing: `make test` makes it (the grid is checked against it)")
    rows = published.load(str(ROOT / "results"), data_root=str(ROOT / "data" / "synthetic"))
    base = Config.from_profile("book")

    def at(method, **settings):
        return report.at_defaults(rows, base.with_overrides(method=method, **settings), method)

    def cell(runs, cat, metric, seen="missing"):
        return report.pm([r[metric] for r in runs if (r["category"], r["known_types"]) == (cat, seen)])

    nf, bgad = at("nf"), at("bgad")
    for cat in ("brick", "grass", "gravel"):  # 5.4 and 7.6: unseen PRO tables
        assert f"| {cat} | {cell(nf, cat, 'unseen_pro')} | {cell(at('bgad', lam=0.0), cat, 'unseen_pro')} | " \
               f"{cell(bgad, cat, 'unseen_pro')} |" in FLAT, cat
        taus = [cell(at("bgad", tau=t), cat, "unseen_pro") for t in (0.0, 0.1, 0.2)]
        assert f"| {cat} | " + " | ".join(taus) + " |" in FLAT, cat
    for seen in ("missing", "crack"):  # 5.5: BGAD − NF over the 9 cells of each seen type
        t = summary.paired_test([r for r in bgad if r["known_types"] == seen],
                                [r for r in nf if r["known_types"] == seen], "unseen_pro")
        assert f"{t['mean_diff']:+.3f}" in FLAT and t["wins"] == t["n"] == 9
    assert f"seen PRO is {cell(nf, 'brick', 'seen_pro', 'crack')} for NF and " \
           f"{cell(bgad, 'brick', 'seen_pro', 'crack')} for BGAD" in FLAT
    names = {"nf": "NF baseline", "bgad": "BGAD", "supcon": "SupCon + k-NN", "firm": "FIRM + k-NN"}
    for m, name in names.items():  # 6.7: seen and unseen pixel AUROC on grass
        runs = summary.axis_rows(rows, base.with_overrides(category="grass", known_types=("missing",)), m, "")
        gap = [r["seen_pixel_auroc"] - r["unseen_pixel_auroc"] for r in runs]
        assert f"| {name} | {report.pm([r['seen_pixel_auroc'] for r in runs])} | " \
               f"{report.pm([r['unseen_pixel_auroc'] for r in runs])} | {report.pm(gap)} |" in FLAT, m
    for a, b, wins in (("bgad", "nf", "18 of 18"), ("bgad", "pushpull", "16 of 18")):  # 7.5: pooled tests
        t = summary.paired_test(at(a), at(b), "unseen_pro")
        assert f"{t['mean_diff']:+.3f}, higher in {t['wins']} of {t['n']} pairs, p = {t['p']:.2g}" in FLAT, (a, b)
        assert f"{t['wins']} of {t['n']}" == wins
    methods = ("nf", "pushpull", "bgad", "supcon", "firm")
    for cat, seen, shown in (("brick", "missing", "+0.029"), ("gravel", "crack", "+0.038"),
                             ("grass", "missing", "+0.055")):
        slice_base = base.with_overrides(category=cat, known_types=(seen,))
        _, noise = report.seed_noise(rows, slice_base, methods, {"unseen_pro": "unseen PRO"})
        mean = {m: summary.summarize(summary.axis_rows(rows, slice_base, m, ""))[0]["unseen_pro_mean"]
                for m in ("nf", "bgad")}
        assert f"{mean['bgad'] - mean['nf']:+.3f}" == shown and shown in FLAT, (cat, seen)
        assert f"{noise['unseen_pro']:.3f}" in FLAT, (cat, seen)


def _check_code(code: str) -> None:
    compile(code, "<exercise>", "exec")
    assert "\t" not in code and max(map(len, code.splitlines())) <= 120


def test_solution_code_runs_on_its_own():
    """Every solution block that is not a chapter's continuation, each in a fresh namespace of one interpreter,
    from the repository root (they read data/synthetic and results/); none of them trains."""
    blocks = [(n, textwrap.dedent(c)) for n, c in solution_blocks() if not IN_CHAPTER.match(c)]
    assert len(blocks) >= 25
    for _, code in blocks:
        _check_code(code)
    if not (ROOT / "data" / "synthetic" / "meta.json").exists():
        pytest.skip("data/synthetic is missing: `make test` makes it (bgad-mini data synth)")
    runner = textwrap.dedent("""
        import functools, json, sys, traceback
        from bgad_mini import published
        published.load = functools.cache(published.load)  # the grid is read once, not once per exercise
        failed = []
        for number, code in json.load(sys.stdin):
            try:
                exec(compile(code, f"<exercise {number}>", "exec"), {"__name__": "__main__"})
            except Exception:
                failed.append((number, traceback.format_exc(limit=3)))
        print(json.dumps(failed))
    """)
    proc = subprocess.run([sys.executable, "-c", runner], input=json.dumps(blocks), capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"exercise {n}:\n{tb}" for n, tb in failed)


CHAPTER_BLOCKS: dict[str, list[str]] = {}
for _number, _code in solution_blocks():
    if (_m := IN_CHAPTER.match(_code)):
        CHAPTER_BLOCKS.setdefault(_m[1], []).append(textwrap.dedent(_code))


def test_chapter_code_names_existing_chapters():
    assert set(CHAPTER_BLOCKS) <= set(book_chapters()) and CHAPTER_BLOCKS
    for blocks in CHAPTER_BLOCKS.values():
        for code in blocks:
            _check_code(code)


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory) -> dict[str, str]:
    """One run cache for the chapters below: the Boundary chapter reuses the Conditional flows chapter's NF run."""
    return {"runs_root": str(tmp_path_factory.mktemp("exercise_runs")),
            "cache_dir": str(tmp_path_factory.mktemp("exercise_cache"))}


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(CHAPTER_BLOCKS, key=lambda s: book_chapters().index(s)))
def test_chapter_code_runs_at_the_end_of_its_chapter(stem, tmp_path, smoke_root, shared_runs):
    """The chapter at the smoke profile with the exercises' cells appended, under papermill, into tmp_path."""
    from nbutil import run_chapter

    nb = nbformat.read(ROOT / "book" / f"{stem}.ipynb", as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(code) for code in CHAPTER_BLOCKS[stem]]
    path = tmp_path / f"{stem}.ipynb"
    nbformat.write(nb, path)
    params = {"profile": "smoke"}
    if stem != "flows":
        params.update(data_root=str(smoke_root), n_known=1, **shared_runs)
    if stem == "contrastive":
        params["results_root"] = ""  # no result grid on the smoke data: the chapter says so and goes on
    out = run_chapter(path, tmp_path / f"{stem}_run.ipynb", **params)
    added = out.cells[-len(CHAPTER_BLOCKS[stem]):]  # papermill inserted its parameters cell above them
    printed = "".join(o.get("text", "") for c in added for o in c.get("outputs", []))
    assert not any(o.get("output_type") == "error" for c in added for o in c.get("outputs", []))
    if stem == "flows":
        assert "max |z1 − x1| = 0.0" in printed  # without the swap the first coordinate passes unchanged
    if stem == "boundary":
        assert "in the nearest rule" in printed and "above b_a" in printed


def test_each_chapter_points_to_its_exercises_with_their_number():
    """The one set lives in the appendix: a chapter's Exercises section links to its group and says how many."""
    import json

    chapters = book_chapters()
    groups = dict.fromkeys(chapters, 0)
    for ex in exercises():
        groups[chapters[ex["number"][0] - 1]] += 1
    for stem in chapters:
        nb = json.loads((ROOT / "book" / f"{stem}.ipynb").read_text())
        text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        section = text.split("## Exercises", 1)[1].split("\n## ", 1)[0]
        assert f"{{ref}}`exercises-{stem}`" in section, stem
        assert f"The {groups[stem]} exercises on this chapter" in " ".join(section.split()), stem
        assert not re.search(r"^\d+\. ", section, re.M), f"{stem} still lists exercises of its own"
