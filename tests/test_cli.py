"""The command line: exit codes, one-line errors, committed dumps, and the README's quick start."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import PROGRAMS, ROOT, reference_programs

from metacurio.app import cli
from metacurio.core import program_io
from metacurio.core import render


def run_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "metacurio", *args], capture_output=True, text=True, cwd=cwd, check=False
    )


def test_packages_import_from_this_repository():
    import envs
    import operations
    import search

    for module in (envs, operations, search):
        assert ROOT in __import__("pathlib").Path(module.__file__).resolve().parents
    assert not (ROOT / "results" / "__init__.py").exists(), "results/ is a data folder, never a package"


@pytest.mark.parametrize("fmt", ["text", "json", "dot"])
def test_show_formats(fmt, capsys):
    assert cli.main(["show", str(PROGRAMS / "fast.json"), "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        assert program_io.from_json(out).id == reference_programs()["fast"].id
    elif fmt == "dot":
        assert out.startswith('digraph "FAST"') and "color=violet" in out
    else:
        assert "← reward" in out and "← loss" in out


def test_show_resolves_reference_names(capsys):
    assert cli.main(["show", "ccim"]) == 0
    assert "CCIM" in capsys.readouterr().out


def test_show_svg_or_clear_message(capsys):
    code = cli.main(["show", "rnd", "--format", "svg"])
    captured = capsys.readouterr()
    if shutil.which("dot"):
        assert code == 0 and "<svg" in captured.out
    else:
        assert code == 2
        assert captured.err.strip() == (
            "metacurio: error: the Graphviz 'dot' binary is not installed; install graphviz or use --format dot"
        )


def test_ops_lists_registry():
    result = run_cli("ops", "--space", "combiner")
    assert result.returncode == 0
    assert "WeightedSum" in result.stdout and "Encode " not in result.stdout


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "metacurio.program", "version": 1, "kind": "curiosity", "states": {}, "forward": [{"id": "r", "op": "Frobnicate", "args": []}], "output": "r"}), "unknown operation 'Frobnicate'"),
        (json.dumps({"format": "metacurio.program", "version": 1, "kind": "combiner", "states": {}, "forward": [{"id": "r", "op": "Add", "args": ["intrinsic", "reward"]}], "output": "r"}), "dangling reference"),
    ],
)
def test_show_malformed_file_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = run_cli("show", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metacurio: error: ") and message in lines[0]


def test_show_missing_file():
    result = run_cli("show", "no/such/program.json")
    assert result.returncode == 2
    assert result.stderr.strip() == "metacurio: error: no such program file: no/such/program.json"


@pytest.mark.parametrize("name", sorted(reference_programs()))
def test_committed_dumps_are_current(name):
    program = reference_programs()[name]
    assert (PROGRAMS / f"{name}.txt").read_text() == render.to_text(program)
    assert (PROGRAMS / f"{name}.dot").read_text() == render.to_dot(program)


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README has no quick start block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _main_job() -> str:
    install_and_run, test_command = quick_start_commands()
    assert test_command == "python -m pytest"
    install, main_job = (part.strip() for part in install_and_run.split("&&"))
    assert install.startswith("pip install")
    return main_job


def test_readme_quick_start_names_the_search():
    assert _main_job() == "metacurio search --preset tiny"


@pytest.mark.slow
def test_readme_quick_start(tmp_path):
    """The main job as written, in a fresh folder (.ci/run also runs it, after the install)."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    result = subprocess.run(_main_job(), shell=True, capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "best completed programs" in result.stdout
    assert (tmp_path / "runs" / "curiosity-tiny" / "store.sqlite").exists()


def test_replay_writes_scores_and_pictures(tmp_path):
    result = run_cli("replay", "fast", "--trials", "2", "--steps", "24", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "seed     4:" in result.stdout and "(mean ± s.e., 2 trials)" in result.stdout
    for name in ("learning_curve.png", "coverage_heatmap.png", "episode.gif"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["replay", "fast", "--env", "atari"], "unknown environment 'atari'"),
        (["replay", "combiner_paper"], "replay runs curiosity programs"),
        (["replay", "missing.json"], "no such program file: missing.json"),
    ],
)
def test_replay_bad_input_one_line_error(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
