"""metacurio transfer: planning, the store, resumption after a kill -9, the CLI on the quick preset, errors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys

import pytest
from helpers import ROOT, reference_programs, wait_for_count

from metacurio.app import cli
from metacurio.core import program_io
from metacurio.app import transfer
from search import store as st
from search.config import TINY
from search.store import EvaluationRow, ProgramRow, RunStore


def _row(program_id, seed, score, env="CartPole-v1", error=None):
    curve, steps = ((score,), (64,)) if score is not None else ((), ())
    return EvaluationRow(program_id, transfer.STAGE, env, seed, score, curve, steps, False, error, 128, 1.0, "w0", 0.0)


# Planning


def test_entries_baselines_and_pending_tasks():
    programs = reference_programs()
    fast = transfer.entry_of(programs["fast"])
    entries = transfer.unique([fast] + transfer.baseline_entries(["none", "fast", "rnd"], programs.__getitem__))
    fast, none, rnd = programs["fast"].id, programs["none"].id, programs["rnd"].id
    assert [e.id for e in entries] == [fast, none, rnd]
    assert entries[1] == transfer.plain_ppo() and entries[1].program.kind == "curiosity"
    # A searched program stored without a name takes the name of the baseline it equals.
    unnamed = transfer.Entry(fast, fast, dataclasses.replace(programs["fast"], name=""))
    assert [(e.id, e.name) for e in transfer.unique([unnamed] + entries[1:] + [entries[0]])][0] == (fast, "FAST")
    from metacurio.agent.gym_presets import preset

    quick = dataclasses.replace(preset("CartPole-v1", "quick"), seeds=(4, 104))
    combiner = programs["combiner_paper"]
    tasks = transfer.pending_tasks(entries, quick, combiner, done={(fast, 4)})
    assert [(t.entry.id, t.seed) for t in tasks] == [(fast, 104), (none, 4), (none, 104), (rnd, 4), (rnd, 104)]
    # Plain PPO goes through the same combiner as every program.
    assert all(t.combiner == combiner for t in tasks)


def test_wrong_programs_and_baselines_are_refused():
    programs = reference_programs()
    with pytest.raises(transfer.TransferError, match="combiner program"):
        transfer.entry_of(programs["combiner_paper"])
    with pytest.raises(transfer.TransferError, match="unknown baseline 'zero'"):
        transfer.baseline_entries(["zero"], programs.__getitem__)


def test_plain_ppo_is_the_zero_reward_program_through_the_same_combiner():
    """The baseline row differs from a program's in nothing but the intrinsic reward: the zero-reward
    program, through the combiner and normalisation, trains exactly as PPO with no curiosity module."""
    from metacurio.agent import gym_trainer
    from metacurio.agent.gym_presets import preset

    quick = dataclasses.replace(preset("CartPole-v1", "quick"), seeds=(4,))
    combiner = reference_programs()["combiner_paper"]
    worker = transfer.TransferJob(quick.to_json()).start()
    baseline = worker.run(transfer.Task(transfer.plain_ppo(), combiner, 4))
    [without_module] = gym_trainer.train(quick, curiosity=None, combiner=combiner)
    assert len(without_module.episode_returns) > 3
    assert (baseline.score, baseline.curve) == (without_module.score, without_module.curve)


def test_a_failing_task_becomes_an_error_row():
    from metacurio.agent.gym_presets import preset
    from search.executor import LocalExecutor

    broken = json.loads(preset("CartPole-v1", "quick").to_json()) | {"env_id": "NoSuchEnv-v0"}
    executor = LocalExecutor(transfer.TransferJob(json.dumps(broken)))
    combiner = reference_programs()["combiner_sum"]
    (outcome,) = executor.map([transfer.Task(transfer.plain_ppo(), combiner, 4)])
    row = transfer.row_of(outcome, "NoSuchEnv-v0/quick")
    assert row.score is None and "unknown gymnasium environment 'NoSuchEnv-v0'" in row.error
    assert (row.program_id, row.stage, row.env, row.seed) == (transfer.plain_ppo().id, "transfer", "NoSuchEnv-v0/quick", 4)
    assert row.worker.startswith("local:") and row.seconds > 0


# The store


@pytest.fixture()
def search_run(tmp_path):
    """A search run whose completed ranking is icm > rnd; fast stopped early with a higher partial score."""
    programs = reference_programs("curiosity")
    store = RunStore.create(tmp_path / "run", TINY, "metacurio search")
    names = ("icm", "rnd", "fast")
    rows = [
        ProgramRow(programs[n].id, i, programs[n].size, "", program_io.to_json(programs[n]), "unique", None, None)
        for i, n in enumerate(names)
    ]
    store.write_candidates([], rows, {})
    for name, score, decision in (("icm", 80.0, st.COMPLETED), ("rnd", 60.0, st.COMPLETED), ("fast", 99.0, st.STOPPED)):
        stopped = decision == st.STOPPED
        evaluation = EvaluationRow(programs[name].id, st.SEARCH, "empty", 4, score, (score,), (12,), stopped, None, 60, 1.0, "w", 0.0)
        store.record_outcome(programs[name].id, st.SEARCH, [evaluation], decision, "{}")
    return store, programs


def test_top_programs_are_the_best_completed(search_run):
    store, programs = search_run
    assert [p.id for p in transfer.top_programs(store, 2)] == [programs["icm"].id, programs["rnd"].id]
    fresh = EvaluationRow(programs["rnd"].id, st.FRESH, "empty", 1004, 90.0, (90.0,), (12,), False, None, 60, 1.0, "w", 0.0)
    store.record_outcome(programs["rnd"].id, st.FRESH, [fresh], st.COMPLETED, "{}")
    assert [p.id for p in transfer.top_programs(store, 5)] == [programs["rnd"].id]
    with pytest.raises(transfer.TransferError, match="--top must be at least 1"):
        transfer.top_programs(store, 0)


def test_rows_are_stored_and_tabulated_per_target_and_seed(search_run):
    store, programs = search_run
    rnd, plain = transfer.entry_of(programs["rnd"]), transfer.plain_ppo()
    stored = [_row(rnd.id, 4, 10.0), _row(rnd.id, 104, 20.0), _row(plain.id, 4, None, error="boom"), _row(rnd.id, 4, 999.0, "Acrobot-v1")]
    for row in stored:
        store.record_transfer(row)
    assert transfer.stored_keys(store, "CartPole-v1") == {(rnd.id, 4), (rnd.id, 104), (plain.id, 4)}
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.record_transfer(_row(rnd.id, 4, 11.0))
    rows = transfer.table_rows(store, [plain, rnd], "CartPole-v1", seeds=(4, 104))
    assert [r.entry.id for r in rows] == [rnd.id, plain.id]
    assert rows[0].mean == 15.0 and rows[0].stderr == pytest.approx(5.0) and rows[0].trials == 2
    assert math.isnan(rows[1].mean) and rows[1].error == "boom"
    assert rows[0].versus_plain is None  # plain PPO has no score on any seed


def test_table_pairs_every_program_with_plain_ppo_by_seed(search_run):
    store, programs = search_run
    rnd, plain = transfer.entry_of(programs["rnd"]), transfer.plain_ppo()
    for seed, mine, theirs in ((4, 10.0, 7.0), (104, 20.0, 16.0), (204, 30.0, 25.0), (304, 99.0, None)):
        store.record_transfer(_row(rnd.id, seed, mine))
        if theirs is not None:
            store.record_transfer(_row(plain.id, seed, theirs))
    rows = {r.entry.id: r for r in transfer.table_rows(store, [plain, rnd], "CartPole-v1", seeds=(4, 104, 204, 304))}
    versus = rows[rnd.id].versus_plain
    # Seed 304 has no plain PPO lifetime, so it is left out of the pairs: differences 3, 4, 5.
    assert versus.seeds == 3 and versus.mean == pytest.approx(4.0)
    half_width = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, 2) · sd / √n
    assert (versus.low, versus.high) == (pytest.approx(4.0 - half_width), pytest.approx(4.0 + half_width))
    assert rows[plain.id].versus_plain is None
    assert transfer.difference_text(versus) == f"+4.00 [{4 - half_width:+.2f}, {4 + half_width:+.2f}]"
    # Search results are untouched and unaffected.
    assert [r.program_id for r in store.ranking(st.SEARCH)][:1] == [programs["fast"].id]


def test_settings_clash_is_refused(search_run):
    from metacurio.agent.gym_presets import preset

    store, _ = search_run
    quick = preset("CartPole-v1", "quick")
    transfer.check_settings(store, quick, "quick", "abc")
    transfer.check_settings(store, dataclasses.replace(quick, seeds=(7,)), "quick", "abc")
    # Another budget is another target: both are kept apart.
    transfer.check_settings(store, preset("CartPole-v1", "paper"), "paper", "abc")
    with pytest.raises(transfer.TransferError, match="already holds CartPole-v1/quick transfer results"):
        transfer.check_settings(store, dataclasses.replace(quick, max_episode_steps=9), "quick", "abc")
    with pytest.raises(transfer.TransferError, match="another combiner"):
        transfer.check_settings(store, quick, "quick", "other-combiner")


# The command line


def test_cli_transfer_quick_preset_stores_and_resumes(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["transfer", "fast", "--env", "CartPole-v1", "--preset", "quick", "--seeds", "4", "--baselines", "none",
            "--executor", "local", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "FAST" in printed and "No curiosity" in printed and "CartPole-v1 (quick)" in printed
    with RunStore.open(out) as store:
        first = store.evaluations(transfer.STAGE)
        assert sorted((r.program_id, r.env, r.seed) for r in first) == sorted(
            [(reference_programs()["fast"].id, "CartPole-v1/quick", 4), (transfer.plain_ppo().id, "CartPole-v1/quick", 4)]
        )
        assert all(r.error is None and r.env_steps == 2 * 256 and len(r.curve) == 4 for r in first)
        assert set(json.loads(store.meta(transfer.PROGRAMS_META))) == {r.program_id for r in first}
    assert cli.main(args) == 0  # resumed: nothing left to run
    assert "FAST" in capsys.readouterr().out
    with RunStore.open(out) as store:
        assert store.evaluations(transfer.STAGE) == first


def test_kill_9_then_rerun_repeats_no_lifetime(tmp_path):
    out = tmp_path / "t"
    args = ["transfer", "fast", "--env", "CartPole-v1", "--preset", "quick", "--seeds", "4", "104", "--baselines", "none",
            "--executor", "local", "--out", str(out), "--quiet"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "metacurio", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_count(out / st.FILE, process, "SELECT COUNT(*) FROM evaluations WHERE stage = 'transfer'", "lifetime")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    with RunStore.open(out) as store:
        killed = store.evaluations(transfer.STAGE)
    assert 0 < len(killed) < 4 and all(r.worker.endswith(f":{process.pid}") for r in killed)
    assert cli.main(args) == 0
    with RunStore.open(out) as store:
        rows = store.evaluations(transfer.STAGE)
    assert sorted((r.program_id, r.seed) for r in rows) == sorted(
        (pid, seed) for pid in (reference_programs()["fast"].id, transfer.plain_ppo().id) for seed in (4, 104)
    )
    # The killed run's lifetimes are kept as they were; the rerun ran only the others.
    assert [r for r in rows if r.worker.endswith(f":{process.pid}")] == killed
    assert sum(r.worker.endswith(f":{os.getpid()}") for r in rows) == 4 - len(killed)


@pytest.mark.parametrize(
    "args, message",
    [
        (["fast", "--env", "NoSuchEnv-v0"], "unknown gymnasium environment 'NoSuchEnv-v0'"),
        (["fast", "--env", "Blackjack-v1"], "Blackjack-v1: unsupported observation space Tuple"),
        (["fast", "--env", "CartPole-v1", "--combiner", "rnd"], "--combiner rnd"),
        (["a", "b", "--top", "2", "--env", "CartPole-v1"], "--top takes exactly one RUN directory"),
        (["nowhere", "--top", "2", "--env", "CartPole-v1"], "not a metacurio run directory"),
        (["combiner_paper", "--env", "CartPole-v1", "--baselines"], "transfer runs curiosity programs"),
    ],
)
def test_cli_bad_input_is_a_one_line_error(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["transfer", *args, "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_cli_transfer_with_ray(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["transfer", "rnd", "--env", "CartPole-v1", "--preset", "quick", "--baselines", "none", "--workers", "1",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    with RunStore.open(out) as store:
        rows = store.evaluations(transfer.STAGE)
    assert len(rows) == 4 and all(r.error is None and r.worker.startswith("ray:") for r in rows)


def test_deep_sea_is_a_transfer_target_whose_curve_counts_treasures(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["transfer", "rnd", "--env", "DeepSea-5", "--preset", "quick", "--seeds", "4", "--baselines", "none",
            "--executor", "local", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    assert "DeepSea-5 (quick)" in capsys.readouterr().out
    with RunStore.open(out) as store:
        rows = store.evaluations(transfer.STAGE)
    assert {r.env for r in rows} == {"DeepSea-5/quick"} and len(rows) == 2
    for row in rows:
        # One point per episode round (4 episodes of 5 steps per env, 8 envs); treasures never un-find.
        assert row.checkpoint_steps == (5, 10, 15, 20) and row.env_steps == 8 * 20
        assert list(row.curve) == sorted(row.curve) and all(c == int(c) for c in row.curve)
        assert -0.01 <= row.score <= 1.0


@pytest.mark.parametrize(
    "env, preset, message",
    [("DeepSea-x", "quick", "DeepSea targets are DeepSea-N"), ("DeepSea-5", "paper", "unknown preset 'paper' for DeepSea-5")],
)
def test_bad_deep_sea_targets_are_one_line_errors(env, preset, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["transfer", "fast", "--env", env, "--preset", preset, "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
