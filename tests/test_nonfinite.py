"""A program whose reward becomes NaN/inf is a failure everywhere, with the step where it happened.

The search stage's own check (evaluator cutoffs, decision 'failed') is covered in test_driver.py;
here the same kind of program goes through every command that runs a single program.
"""

from __future__ import annotations

import pytest

from metacurio.app import cli
from metacurio.core import program_io
from metacurio.core.program import ProgramBuilder


def six_squares():
    """(10 + distance)^64: past float32's range from the first transition, as in the bug report."""
    b = ProgramBuilder("curiosity", name="six-squares")
    b.state("enc", "ObsNet")
    distance = b.forward(
        "L2Distance", b.forward("EncodeDetached", "obs", state="enc"), b.forward("EncodeDetached", "next_obs", state="enc")
    )
    reward = b.forward("Add", distance, 10.0)
    for _ in range(6):
        reward = b.forward("Square", reward)
    return b.build(output=reward)


@pytest.fixture(scope="module")
def program_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("programs") / "six_squares.json"
    program_io.save(six_squares(), path)
    return str(path)


def one_line_failure(capsys, argv) -> str:
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--trials", "2", "--steps", "24"],
            "six-squares failed: non-finite intrinsic reward by env step 12 (PPO update 1) of seed 4; 2 of 2 trials affected",
        ),
        (
            ["--env", "CartPole-v1", "--preset", "quick", "--seeds", "7"],
            "six-squares failed on CartPole-v1: non-finite rewards or agent parameters by env step 64 (PPO update 1) of seed 7",
        ),
    ],
    ids=["gridworld", "gymnasium"],
)
def test_replay_fails_with_the_step_and_draws_nothing(program_file, tmp_path, capsys, options, message):
    out = tmp_path / "replay"
    assert one_line_failure(capsys, ["replay", program_file, *options, "--out", str(out)]) == f"metacurio: error: {message}"
    assert not out.exists()


def test_transfer_stores_the_failure_and_exits_non_zero(program_file, tmp_path, capsys):
    from search.store import RunStore

    out = tmp_path / "transfer"
    argv = ["transfer", program_file, "--env", "CartPole-v1", "--preset", "quick", "--seeds", "4", "--baselines", "none"]
    argv += ["--executor", "local", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("metacurio: error: 1 of 2 programs failed on CartPole-v1/quick (stored with their errors); six-squares: ")
    assert "non-finite rewards or agent parameters by env step 64 (PPO update 1) of seed 4" in err[-1]
    with RunStore.open(out) as store:
        rows = {r.program_id: r for r in store.evaluations("transfer")}
    plain = program_io.resolve("none").id
    assert rows[plain].error is None and rows[plain].score is not None
    assert rows[six_squares().id].score is None and "by env step 64" in rows[six_squares().id].error


def test_search_of_the_program_alone_fails_with_the_step(program_file, tmp_path, capsys):
    out = tmp_path / "search"
    message = one_line_failure(capsys, ["search", "--programs", program_file, "--executor", "local", "--quiet", "--out", str(out)])
    assert message == (
        f"metacurio: error: no program survived duplicate removal (1 of 1 failed); {six_squares().id}: "
        "non-finite reward at step 1 of 8"
    )
