"""Every `bgad-mini` command line the README shows runs, in the README's order, on small data.

Each line is taken from README.md as written and made small in one documented way (`smoke_argv`): the `smoke`
profile, the first category and seed of a list, a temporary workspace with the smoke dataset and a fake MVTecAD
(MVTecAD's names) served from 127.0.0.1 for `data mvtec` / `data btad`. A line that cannot run here is listed in
`NOT_RUN` with the test that covers it; a README line that is neither run nor listed fails the test, so the README
cannot drift from the CLI again.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bgad_mini.cli import main
from bgad_mini.download import BTAD, MVTEC
from fake_mvtec import make_fake_mvtec
from test_download import btad_files, make_tar, make_zip, serve, server, sha  # noqa: F401 - `server` is a fixture

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: README lines that need what a test machine has not (regex -> why, and what tests it instead).
NOT_RUN = {
    r"--scheduler(-file)?\b": "needs a Dask cluster: tests/test_cluster.py runs a real scheduler and workers",
    r"--set key=value$": "the syntax; the example after it (--set beta=0.01 tau=0.1) runs",
}
#: List flags cut to their first value (the README shows the full grid; the test runs one slice of it).
FIRST_ONLY = ("--seeds", "--categories")
#: A command the README runs first in the same workspace, for a line that reads its output.
PUBLISHED_SMOKE_GRID = "ablate --profile smoke --methods nf --categories brick --seeds 0 --publish --out results"


def readme_commands(text: str) -> list[str]:
    """The `bgad-mini ...` lines of the README in its order (inline code and code blocks), program name dropped;
    `` `bgad-mini a` / `b` `` gives two lines, and an inline `--set ...` example is run on a `run` line. A bare
    `bgad-mini data` in a sentence names the command group, not a command line."""
    found: list[str] = []
    for i, part in enumerate(re.split(r"```[a-z]*\n(.*?)```", text, flags=re.S)):
        if i % 2:  # a code block
            found += [m.group(1) for line in part.splitlines() if (m := _PROGRAM.match(line.strip()))]
            continue
        for m in re.finditer(r"`([^`\n]+)`(\s*/\s*`([^`\n]+)`)?", part):
            if (p := _PROGRAM.match(m.group(1))):
                found.append(p.group(1))
                if m.group(3):
                    found.append(m.group(3))
            elif m.group(1).startswith("--set "):
                found.append(f"run --method bgad --category brick --profile smoke --seed 0 --out runs/set "
                             f"{m.group(1)}")
    return [c for c in found if len(c.split()) > 1]


_PROGRAM = re.compile(r"^(?:\.venv/bin/)?(?:bgad-mini|python -m bgad_mini)\s+(.*)$")


def not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN.items() if re.search(pattern, command)), None)


def smoke_argv(command: str, urls: dict[str, tuple[str, str]]) -> list[str]:
    """A README line made small: optional `[...]` parts taken without the `...`, `--profile smoke` (also where the
    line relies on the default profile), the first
    value of `FIRST_ONLY` lists, and for `data mvtec|btad` the fake archive's `--url` and `--sha256`."""
    command = re.sub(r"\[([^\]]*)\]", r"\1", command).replace("...", " ")
    argv = shlex.split(command)
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--profile":
            out += ["--profile", "smoke"]
            i += 2
            continue
        if tok in FIRST_ONLY:
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            out += [tok, values[0]]
            continue
        out.append(tok)
        i += 1
    if out[:1] == ["data"] and out[1] in urls:
        url, digest = urls[out[1]]
        out += ["--url", url, "--sha256", digest]
    takes_profile = out[0] in ("run", "ablate", "reproduce") or out[:2] == ["data", "synth"]
    if takes_profile and "--profile" not in out:  # the default profile is `book`
        out += ["--profile", "smoke"]
    return out


def test_readme_commands_are_found_and_each_is_run_or_excused():
    commands = readme_commands(README.read_text())
    verbs = {c.split()[0] + " " + c.split()[1] if c.startswith(("data", "results")) else c.split()[0]
             for c in commands}
    assert {"data synth", "data mvtec", "data btad", "run", "eval", "ablate", "results check", "results verify",
            "reproduce"} <= verbs
    assert any("--set beta=0.01 tau=0.1" in c for c in commands)  # the example that once failed
    for pattern in NOT_RUN:  # no stale excuse
        assert any(re.search(pattern, c) for c in commands), f"stale NOT_RUN entry {pattern}"


@pytest.fixture
def workspace(tmp_path, smoke_root, monkeypatch, server):  # noqa: F811 - pytest fixture by name
    """A folder like a checkout: data/synthetic_smoke (the smoke dataset), fake MVTecAD and BTAD archives on a
    local server. Returns the archives' URLs and checksums."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synthetic_smoke").symlink_to(smoke_root, target_is_directory=True)
    fake = make_fake_mvtec(tmp_path / "fake_src", categories=("bottle",))
    files = {str(p.relative_to(fake)): p.read_bytes() for p in sorted(fake.rglob("*")) if p.is_file()}
    (tmp_path / "archives").mkdir()
    mvtec = make_tar(tmp_path / "archives" / MVTEC.filename, files)
    btad = make_zip(tmp_path / "archives" / BTAD.filename, btad_files(""))
    monkeypatch.chdir(tmp_path)
    return {"mvtec": (serve(server, mvtec), sha(mvtec)), "btad": (serve(server, btad), sha(btad))}


@pytest.mark.slow
def test_every_readme_command_runs_on_small_data(workspace, capsys):
    commands = readme_commands(README.read_text())
    ran = []
    for command in commands:
        if not_run(command):
            continue
        if command.startswith("results"):
            if not Path("results").exists():
                assert main(shlex.split(PUBLISHED_SMOKE_GRID) + ["--no-progress"]) == 0
        argv = smoke_argv(command, workspace)
        code = main(argv)
        out = capsys.readouterr()
        assert code == 0, f"README line `bgad-mini {command}` -> `bgad-mini {shlex.join(argv)}` exited {code}:\n" \
                          f"{out.err[-2000:]}"
        ran.append(argv)
    assert Path("data/mvtec/bottle/test/broken_large").is_dir() and Path("data/btad/01/train").is_dir()
    assert Path("runs/bgad_brick/results.json").is_file() and Path("runs/bottle/results.json").is_file()
    assert Path("runs/ablate/results.csv").is_file() and Path("runs/reproduce/reproduce.md").is_file()
    assert len(ran) >= 10
