"""Arguments and files are checked at the door: one line, status 2, and nothing created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metacurio import arguments
from metacurio.core import program_io
from metacurio.app.cli import main
from metacurio.core.program import ProgramError
from search.config import TINY, ConfigError, load_file, with_fields

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "metacurio", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_json_limits_apply_before_parsing():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(arguments.ArgumentError, match="more than 32 levels deep"):
        arguments.loads(deep, "x")
    # Brackets inside strings are text, not nesting.
    assert arguments.loads(json.dumps({"a": "[" * 1000}), "x") == {"a": "[" * 1000}
    assert arguments.loads("[" * 32 + "]" * 32, "x") is not None
    with pytest.raises(arguments.ArgumentError, match="at most 1,048,576 are read"):
        arguments.loads(" " * (arguments.MAX_JSON_BYTES + 1), "x")


def test_program_and_config_files_over_the_limits_are_refused(tmp_path):
    deep, huge = tmp_path / "deep.json", tmp_path / "huge.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    huge.write_text(json.dumps({"name": "x" * (2 << 20)}))
    for path in (deep, huge):
        with pytest.raises(ProgramError, match=path.name):
            program_io.load(path)
        with pytest.raises(ConfigError, match="config file"):
            load_file(path, TINY)


@pytest.mark.parametrize(
    "seeds, message",
    [
        ([1180591620717411303424], "from 0 to 4294967295"),
        ([-5], "from 0 to 4294967295"),
        ([3, 4, 3], "seed 3 is given more than once"),
    ],
)
def test_seed_checks(seeds, message):
    with pytest.raises(arguments.ArgumentError, match=message):
        arguments.check_seeds(seeds)
    assert arguments.check_seeds([0, arguments.MAX_SEED]) == (0, 2**32 - 1)


def test_config_bounds_sizes_and_seeds():
    with pytest.raises(ConfigError, match="from 1 to 7 for curiosity programs"):
        with_fields(TINY, {"max_ops": 100})
    with pytest.raises(ConfigError, match="2\\*\\*32 - 1"):
        with_fields(TINY, {"seeds": [2**40]})


@pytest.fixture(scope="module")
def deep_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("files") / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "{deep}"], "nests arrays or objects more than 32 levels deep"),
        (["replay", "{deep}"], "nests arrays or objects more than 32 levels deep"),
        (["transfer", "{deep}", "--env", "CartPole-v1", "--out", "{out}"], "more than 32 levels deep"),
        (["search", "--config", "{deep}", "--out", "{out}"], "more than 32 levels deep"),
        (["search", "--programs", "{deep}", "--out", "{out}"], "more than 32 levels deep"),
        (["replay", "fast", "--seeds", "1180591620717411303424"], "every seed must be an integer from 0 to 4294967295"),
        (["replay", "fast", "--seeds", "-5"], "every seed must be an integer from 0 to 4294967295"),
        (["replay", "fast", "--seeds", "4", "4"], "seed 4 is given more than once"),
        (["replay", "fast", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["replay", "fast", "--trials", "0"], "--trials must be at least 1, got 0"),
        (["transfer", "fast", "--env", "CartPole-v1", "--seeds", "-4", "--out", "{out}"], "every seed must be"),
        (["transfer", "fast", "--env", "CartPole-v1", "--seeds", "7", "7", "--out", "{out}"], "given more than once"),
        (["enumerate", "--max-ops", "100"], "--max-ops must be from 1 to 7 for curiosity programs, got 100"),
        (["enumerate", "--max-ops", "0"], "--max-ops must be from 1 to 7"),
        (["enumerate", "--space", "combiner", "--max-ops", "4"], "the paper searched combiners of ≤ 3 ops"),
        (["search", "--max-ops", "100", "--out", "{out}"], "about 3 minutes to enumerate"),
        (["search", "--trials", "0", "--out", "{out}"], "--trials must be at least 1"),
        (["search", "--limit", "0", "--out", "{out}"], "--limit must be at least 1"),
        (["search", "--workers", "0", "--out", "{out}"], "--workers must be at least 1"),
    ],
)
def test_cli_refuses_bad_arguments_in_one_line_before_any_work(tmp_path, monkeypatch, capsys, deep_file, args, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main([a.format(deep=deep_file, out=out) for a in args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metacurio: error: ") and message in lines[0], lines
    assert not any(tmp_path.iterdir()), "a refused command must create nothing"


def test_a_bad_argument_exits_2_from_the_shell(tmp_path):
    result = run_cli("replay", "fast", "--seeds", "-5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "metacurio: error: --seeds: every seed must be an integer from 0 to 4294967295 (2**32 - 1), got -5"
    ]
