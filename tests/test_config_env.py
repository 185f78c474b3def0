"""Config profiles and overrides, and pyproject.toml / environment.yml agreement."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bgad_mini.config import Config
from bgad_mini.errors import BgadError

ROOT = Path(__file__).resolve().parents[1]


def _req_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("book", "test"):
        wanted += project["optional-dependencies"][extra]
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip() == "- pip:")
    pip_specs = [l.strip()[2:].strip() for l in lines[start + 1:]
                 if l.strip().startswith("- ") and not l.strip().startswith("- -e")]
    norm = lambda s: s.replace(" ", "").lower()
    assert sorted(map(norm, pip_specs)) == sorted(map(norm, wanted))


def test_torch_is_a_range_not_a_pin():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in deps if _req_name(d) == "torch")
    assert "==" not in torch and "<" in torch and ">=" in torch


def test_profiles_and_typed_overrides():
    smoke = Config.from_profile("smoke")
    assert smoke.img_size == 64 and smoke.profile == "smoke"
    cfg = Config.from_profile("book", beta="0.05", focal="false", known_types="scratch,hole", stages="1,2")
    assert cfg.beta == 0.05 and cfg.focal is False and cfg.known_types == ("scratch", "hole") and cfg.stages == (1, 2)
    assert Config.from_profile("book", **{"lambda": "2"}).lam == 2.0
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("key,value,words", [
    ("beta", "1.5", "beta must lie in (0, 1)"), ("beta", "0", "beta must lie in (0, 1)"),
    ("tau", "-0.1", "tau must be >= 0"), ("method", "magic", "unknown method"),
    ("boundary", "global", "boundary must be"), ("n_known", "x", "not a valid int"), ("bogus", "1", "unknown setting"),
])
def test_bad_settings_give_one_clear_line(key, value, words):
    with pytest.raises(BgadError) as exc:
        Config.from_profile("book", **{key: value})
    assert words in str(exc.value) and "\n" not in str(exc.value)
