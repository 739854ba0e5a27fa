"""The reward-combiner search (design §4.4): combiner dedup, combiners run as data in the
gymnasium trainer, and a tiny Lunar Lander search end to end with its controls and a resume."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import jax
import numpy as np
import pytest
from helpers import ROOT

from metacurio.core import program_io
from metacurio.core.compiler import compile_program
from metacurio.core.program import COMBINER, ProgramBuilder
from search import store as st
from search.config import COMBINER_TINY, ConfigError, SearchConfig, from_dict, with_fields
from search.driver import fixed_curiosity, resolve_controls, run_search
from search.store import RunStore


def combiner(build) -> object:
    b = ProgramBuilder(COMBINER)
    return b.build(build(b))


SUM = combiner(lambda b: b.forward("Add", "intrinsic", "extrinsic"))
# e − (−1·i): the same reward as i + e, written with other operations.
SUM_REWRITTEN = combiner(lambda b: b.forward("Subtract", "extrinsic", b.forward("Multiply", "intrinsic", -1.0)))
HALF_SUM = combiner(lambda b: b.forward("Multiply", b.forward("Add", "intrinsic", "extrinsic"), 0.5))
HALF_EXTRINSIC = combiner(lambda b: b.forward("Add", "intrinsic", b.forward("Multiply", "extrinsic", 0.5)))
MAX = combiner(lambda b: b.forward("Max", "intrinsic", "extrinsic"))


def test_dedup_merges_equivalent_combiners_and_keeps_different_ones():
    from search.combiner_signature import deduplicate_combiners

    programs = [HALF_SUM, SUM_REWRITTEN, SUM, HALF_EXTRINSIC, MAX]
    dedup = deduplicate_combiners(programs, steps=64)
    assert not dedup.failed
    # The smallest member (one op) represents the sum's class; a positive rescaling joins it.
    assert dedup.duplicate_of == {HALF_SUM.id: SUM.id, SUM_REWRITTEN.id: SUM.id}
    assert [p.id for p in dedup.unique] == [SUM.id, HALF_EXTRINSIC.id, MAX.id]


def test_dedup_refuses_curiosity_programs():
    from search.combiner_signature import deduplicate_combiners

    with pytest.raises(ValueError, match="is a curiosity program"):
        deduplicate_combiners([program_io.resolve("fast")], steps=4)


def test_interpreted_combiner_gives_the_compiled_combiners_rewards():
    """One trainer with a combiner layout runs each combiner as data; its lifetimes equal those of
    a trainer compiled for that one combiner (same rewards, same learning, same scores)."""
    from envs.gymnasium_envs import inspect_env
    from metacurio.agent.gym_trainer import GymTrainer
    from metacurio.core.layout import Layout, encode

    preset = COMBINER_TINY.gym_preset()
    ppo = dataclasses.replace(preset.ppo, lifetime_steps=128)
    spaces = inspect_env(preset.env_id)
    curiosity = compile_program(program_io.resolve("fast"))
    paper = program_io.resolve("combiner_paper")
    # RunningNorm carries state through the lifetime; the paper's combiner reads τ.
    normed = combiner(lambda b: b.forward("Add", b.forward("RunningNorm", "intrinsic", state=b.state("stats", "RunningStats")), "extrinsic"))
    layout = Layout.for_programs([paper, normed])
    interpreted = GymTrainer(spaces, ppo, curiosity, combiner_layout=layout)
    for program in (paper, normed):
        compiled = GymTrainer(spaces, ppo, curiosity, compile_program(program)).run(4, preset.max_episode_steps)
        data = interpreted.run(4, preset.max_episode_steps, combiner_encoding=encode(program, layout))
        assert data.episode_returns == compiled.episode_returns
        np.testing.assert_allclose(data.curve, compiled.curve, rtol=1e-5)
        for name in ("combined_reward", "reward", "intrinsic_reward"):
            np.testing.assert_allclose(data.metrics[name], compiled.metrics[name], rtol=1e-4, atol=1e-6)
        for a, b in zip(jax.tree.leaves(data.params), jax.tree.leaves(compiled.params)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_combiner_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="config field curiosity must name"):
        with_fields(COMBINER_TINY, {"curiosity": ""})
    with pytest.raises(ConfigError, match="gym_budget"):
        with_fields(COMBINER_TINY, {"gym_budget": "huge"})
    with pytest.raises(ConfigError, match="config field curiosity is for combiner searches"):
        with_fields(COMBINER_TINY, {"space": "curiosity", "gym_env": "", "max_ops": 4})
    with pytest.raises(ValueError, match="is a combiner program; a combiner search needs a curiosity program"):
        fixed_curiosity(with_fields(COMBINER_TINY, {"curiosity": "combiner_paper"}))
    with pytest.raises(ValueError, match="this search's controls are combiner programs"):
        resolve_controls(["fast"], "combiner")


def test_stored_configs_of_curiosity_runs_still_load(tmp_path):
    """The shipped curiosity search (committed store, copied: opening must not touch the shipped
    file) was stored before the combiner fields existed."""
    store_file = subprocess.run(
        ["git", "show", "HEAD:results/search-curiosity-5/store.sqlite"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    (tmp_path / st.FILE).write_bytes(store_file)
    with RunStore.open(tmp_path) as store:
        config = store.config()
    assert config.space == "curiosity" and config.score_name == "coverage" and config.curiosity == ""
    stored = json.loads(config.to_json())
    for field in ("curiosity", "gym_env", "gym_budget"):
        del stored[field]
    assert from_dict(stored) == config


def counts(store: RunStore) -> dict[str, int]:
    return {stage: len(store.decided(stage)) for stage in st.STAGES}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The combiner-tiny search, run once for the tests below."""
    run = tmp_path_factory.mktemp("combiner") / "run"
    return run, run_search(COMBINER_TINY, run, executor="local", progress=False)


def test_tiny_combiner_search_end_to_end_with_controls_and_resume(tiny_run):
    run, summary = tiny_run
    assert summary.score_name == "LunarLander-v3 return"
    assert summary.evaluated[st.SEARCH] == COMBINER_TINY.limit
    assert summary.evaluated[st.CONTROL_SEARCH] == summary.evaluated[st.CONTROL_FRESH] == 2
    assert summary.evaluated[st.FRESH] == 1
    assert {name for name, _ in summary.controls} == {"Paper combiner", "Sum combiner"}
    with RunStore.open(run) as store:
        assert SearchConfig.from_json(store.config().to_json()) == COMBINER_TINY
        assert {row.env for row in store.evaluations()} == {"LunarLander-v3"}
        # Two checkpoints of two updates each: the curve is the return after the 2nd and 4th update.
        assert {row.checkpoint_steps for row in store.evaluations(st.SEARCH)} <= {(128,), (128, 256)}
        before = counts(store)
        evaluations = len(store.evaluations())
    resumed = run_search(None, run, resume=True, executor="local", progress=False)
    with RunStore.open(run) as store:
        assert counts(store) == before and len(store.evaluations()) == evaluations
    assert [r.program_id for r in resumed.best] == [r.program_id for r in summary.best]


def test_combiner_search_cli_resume_and_report(tiny_run, tmp_path, capsys):
    from metacurio.app import cli

    run, _ = tiny_run
    assert cli.main(["search", "--resume", "--out", str(run), "--executor", "local", "--quiet"]) == 0
    assert "mean LunarLander-v3 return" in capsys.readouterr().out
    assert cli.main(["report", str(run)]) == 0
    assert "Search-stage LunarLander-v3 return" in (run / "report.md").read_text()
    assert cli.main(["search", "--space", "combiner", "--curiosity", "combiner_sum", "--out", str(tmp_path / "bad"), "--quiet"]) != 0
    assert "a combiner search needs a curiosity program" in capsys.readouterr().err
    assert cli.main(["search", "--space", "combiner", "--curiosity", "no_such_program", "--out", str(tmp_path / "bad"), "--quiet"]) != 0
