"""The search driver: every stage on real evaluations, resume after a kill -9, worker deaths, CLI errors.

The runs evaluate four reference programs and one whose reward overflows, with a tiny PPO budget
(2 trials × 2 envs × 108 steps, one check at step 96, where the four programs' mean coverages all
differ) so that a whole search takes seconds once the lifetime is compiled; the in-process runs
share one evaluator.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import PROGRAMS, ROOT, wait_for_count

from metacurio.app import cli
from metacurio.core import program_io
from metacurio.core.program import ProgramBuilder
from search import store as st
from search.config import TINY, with_fields
from search.driver import run_search
from search.store import RunStore

NAMES = ("knn_novelty", "rnd", "fast", "inverse_model")
FIELDS = {
    "dedup": False,
    "seeds": [4, 104],
    "lifetime_steps": 108,
    "num_envs": 2,
    "checkpoint_every": 96,
    "top_k": 2,
    # Far below zero puts the cutoff above every curve where the top programs differ (step 96),
    # so the second batch is stopped and the recheck stage has work.
    "num_stdevs": -1000.0,
    # Whichever batch the failing program falls in, the first holds two completed programs.
    "batch_size": 3,
    "limit": None,
    "recheck_sample": 1,
    "fresh_top_k": 1,
    "fresh_seeds": [5, 105],
    # FAST is also one of the searched programs: a control keeps its own stages.
    "controls": ["none", "fast"],
}
CONFIG = with_fields(TINY, FIELDS)


def overflow():
    """|features| · 1e38, squared: infinite from the first call."""
    b = ProgramBuilder(name="overflow")
    b.state("random", "ObsNet")
    norm = b.forward("L2Norm", b.forward("EncodeDetached", "next_obs", state="random"))
    return b.build(b.forward("Square", b.forward("Multiply", norm, 1e38)))


def programs():
    return [program_io.load(PROGRAMS / f"{name}.json") for name in NAMES] + [overflow()]


@pytest.fixture(scope="module")
def program_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("programs")
    program_io.save(overflow(), folder / "overflow.json")
    return [str(PROGRAMS / f"{name}.json") for name in NAMES] + [str(folder / "overflow.json")]


def evaluation_keys(store: RunStore) -> list[tuple]:
    return [(e.program_id, e.stage, e.env, e.seed) for e in store.evaluations()]


def evaluation_values(store: RunStore) -> dict[tuple, tuple]:
    """Everything an evaluation computed (not when, where or how fast)."""
    return {
        (e.program_id, e.stage, e.env, e.seed): (e.score, e.curve, e.checkpoint_steps, e.stopped_early, e.error, e.env_steps)
        for e in store.evaluations()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted in-process search over the five programs."""
    run_dir = tmp_path_factory.mktemp("runs") / "whole"
    summary = run_search(CONFIG, run_dir, executor="local", progress=False, programs=programs(), command="test")
    return run_dir, summary


def test_every_unique_program_is_decided_once_per_stage(finished):
    run_dir, summary = finished
    with RunStore.open(run_dir) as store:
        ids = {p.id for p in store.programs("unique")}
        assert len(ids) == 5 and store.funnel() == [
            ("candidates", 5, "programs given on the command line"),
            ("unique", 5, "duplicate removal off"),
        ]
        search = store.decided("search")
        assert set(search) == ids
        stopped = sorted(pid for pid, d in search.items() if d == "stopped")
        completed = sorted(pid for pid, d in search.items() if d == "completed")
        assert stopped, "the scenario needs stopped programs (see num_stdevs)"
        recheck = store.decided("recheck")
        assert len(recheck) == 1 and set(recheck) <= set(stopped)
        best_completed = [r.program_id for r in store.ranking() if r.program_id in completed][0]
        assert store.decided("fresh") == {best_completed: "completed"}
        assert sorted(e.seed for e in store.evaluations("fresh")) == [5, 105]
        keys = evaluation_keys(store)
        assert len(keys) == len(set(keys)) == (5 + 1 + 1 + 2 + 2) * 2
        assert summary.evaluated == {"search": 5, "recheck": 1, "fresh": 1, "control-search": 2, "control-fresh": 2}
        assert json.loads(store.meta("layout"))["max_nodes"] == 5


def test_controls_run_in_full_on_the_seeds_of_every_scoring_stage(finished):
    run_dir, summary = finished
    references = {name: program_io.load(PROGRAMS / f"{name}.json") for name in ("none", "fast")}
    with RunStore.open(run_dir) as store:
        controls = json.loads(store.meta("controls"))
        assert list(controls) == [references["none"].id, references["fast"].id]
        for stage, control_stage in (("search", "control-search"), ("fresh", "control-fresh")):
            assert store.decided(control_stage) == {pid: "completed" for pid in controls}
            rows = store.evaluations(control_stage)
            assert {r.seed for r in rows} == {r.seed for r in store.evaluations(stage)}
            assert not any(r.stopped_early for r in rows) and all(r.score is not None for r in rows)
        # The searched FAST and the control FAST ran the same lifetimes on the same seeds.
        fast = references["fast"].id
        searched = {r.seed: r.score for r in store.evaluations("search") if r.program_id == fast}
        control = {r.seed: r.score for r in store.evaluations("control-search") if r.program_id == fast}
        if store.decided("search")[fast] == "completed":
            assert searched == pytest.approx(control)
    assert [name for name, _ in summary.controls] and {r.program_id for _, r in summary.controls} == set(controls)


def test_a_failing_program_is_recorded_and_the_search_goes_on(finished):
    run_dir, _ = finished
    failing = overflow().id
    with RunStore.open(run_dir) as store:
        decisions = {d.program_id: d for d in store.decisions("search")}
        assert decisions[failing].decision == "failed"
        assert decisions[failing].detail == "non-finite intrinsic reward before env step 96"
        rows = [e for e in store.evaluations("search") if e.program_id == failing]
        assert [e.error for e in rows] == [decisions[failing].detail] * 2
        assert failing not in {r.program_id for r in store.ranking()}
        assert sum(d.decision != "failed" for d in decisions.values()) == 4


def test_batches_use_the_cutoffs_of_the_programs_completed_before_them(finished):
    run_dir, _ = finished
    with RunStore.open(run_dir) as store:
        selected = {d.program_id: json.loads(d.detail) for d in store.decisions("select")}
        batches = sorted({d["batch"] for d in selected.values()})
        assert batches == [1, 2] and all(d["random"] and d["predicted"] is None for d in selected.values())
        decisions = store.decided("search")
        first = [pid for pid, d in selected.items() if d["batch"] == 1]
        second = [pid for pid, d in selected.items() if d["batch"] == 2 and decisions[pid] != "failed"]
        assert all(selected[pid]["cutoffs"] == [] for pid in first)
        curves = {}
        for e in store.evaluations("search"):
            curves.setdefault(e.program_id, []).append(e.curve)
        curves = {pid: np.array(c) for pid, c in curves.items()}
        # top_k 2 of the first batch's completed programs (best final mean; no ties among these):
        # mean of their means − k·population std − mean of their standard errors.
        completed = sorted((pid for pid in first if decisions[pid] == "completed"), key=lambda pid: -curves[pid][:, -1].mean())
        top = np.stack([curves[pid].mean(axis=0) for pid in completed[:2]])
        stderr = np.stack([curves[pid].std(axis=0, ddof=1) / math.sqrt(2) for pid in completed[:2]])
        expected = top.mean(axis=0) - CONFIG.num_stdevs * top.std(axis=0) - stderr.mean(axis=0)
        for pid in second:
            np.testing.assert_allclose(selected[pid]["cutoffs"], expected)
        for pid in second:
            cutoffs = selected[pid]["cutoffs"]
            means = curves[pid].mean(axis=0)
            # The last checkpoint ends the lifetime and is never checked.
            below = [i for i in range(len(cutoffs) - 1) if means[i] < cutoffs[i]]
            if decisions[pid] == "stopped":
                assert below and len(means) == below[0] + 1
            else:
                assert not below and len(means) == len(cutoffs)


def test_resume_reruns_exactly_the_uncommitted_programs(finished, tmp_path):
    run_dir, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with RunStore.open(run_dir) as store:
        whole = evaluation_values(store)
        ranking = store.ranking()
        second = sorted(d.program_id for d in store.decisions("select") if json.loads(d.detail)["batch"] == 2)
    # What a kill during the second batch leaves: its selection, one of its programs, no later stage.
    db = sqlite3.connect(copy / st.FILE)
    with db:
        for table in ("evaluations", "decisions"):
            later = "stage IN ('recheck', 'fresh') OR (stage = 'search' AND program_id = ?)"
            db.execute(f"DELETE FROM {table} WHERE {later}", (second[0],))
    db.close()
    run_search(None, copy, resume=True, executor="local", progress=False)
    with RunStore.open(copy) as store:
        assert evaluation_values(store) == whole
        assert [(r.program_id, r.mean) for r in store.ranking()] == [(r.program_id, r.mean) for r in ranking]


def test_resuming_a_finished_run_changes_nothing_and_starts_no_workers(finished):
    import ray

    run_dir, _ = finished
    with RunStore.open(run_dir) as store:
        before = evaluation_keys(store), store.decisions()
    run_search(None, run_dir, resume=True, executor="ray", progress=False)
    assert not ray.is_initialized()
    with RunStore.open(run_dir) as store:
        assert (evaluation_keys(store), store.decisions()) == before


def test_kill_9_then_resume_matches_an_uninterrupted_run(finished, program_files, tmp_path):
    run_dir, _ = finished
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(FIELDS))
    out = tmp_path / "killed"
    args = ["search", "--config", str(config_file), "--programs", *program_files, "--executor", "local", "--quiet"]
    args += ["--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "metacurio", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_count(out / st.FILE, process, "SELECT COUNT(*) FROM decisions WHERE stage = 'search'", "search decision")
        assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read()}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    with RunStore.open(out) as store:
        assert store.decided("search") and not store.decided("fresh")
    assert cli.main([*args, "--resume"]) == 0
    with RunStore.open(out) as resumed, RunStore.open(run_dir) as whole:
        keys = evaluation_keys(resumed)
        assert len(keys) == len(set(keys)) == len(evaluation_keys(whole))
        assert evaluation_values(resumed) == evaluation_values(whole)
        assert [r.program_id for r in resumed.ranking()] == [r.program_id for r in whole.ranking()]
        assert resumed.meta("command").startswith("metacurio search --config")


@pytest.mark.slow
def test_a_killed_ray_actor_has_its_chunk_retried(finished):
    from metacurio.core.layout import Layout
    from search.executor import RayExecutor, Task, WorkerSpec

    import ray

    spec = WorkerSpec(Layout.for_programs(programs()), CONFIG.grid(), CONFIG.ppo(), CONFIG.checkpoint_every)
    tasks = [Task(p.id, p, "search", (4, 104), None) for p in programs()]
    executor = RayExecutor(spec, workers=2, chunk_size=2)
    try:
        victim = executor.pids()[0]
        # Both actors are still compiling their first chunk two seconds in.
        killer = threading.Timer(2.0, os.kill, (victim, signal.SIGKILL))
        killer.start()
        outcomes = list(executor.map(tasks))
        killer.join()
        assert executor.restarts == 1
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert sorted(o.task.program_id for o in outcomes) == sorted(t.program_id for t in tasks)
    assert all(o.error is None and (o.result.error is None) == (o.task.program_id != overflow().id) for o in outcomes)
    # The victim returned nothing: its chunk was evaluated again by another actor.
    assert all(o.worker.startswith("ray:") and not o.worker.endswith(f":{victim}") for o in outcomes)
    local = spec.start()
    for outcome in outcomes:
        expected = local.run(outcome.task)
        np.testing.assert_array_equal(outcome.result.curves, expected.curves)


@pytest.mark.slow
def test_workers_that_cannot_start_stop_the_run_with_one_line():
    from metacurio.core.layout import Layout
    from search.executor import ExecutorError, RayExecutor, Task, WorkerSpec

    import ray

    # No gridworld: every actor's evaluator raises while it is built.
    spec = WorkerSpec(Layout.for_programs(programs()), None, CONFIG.ppo(), CONFIG.checkpoint_every)
    program = programs()[0]
    executor = RayExecutor(spec, workers=1)
    try:
        with pytest.raises(ExecutorError, match="^a Ray worker failed to start: ActorDiedError: ") as err:
            list(executor.map([Task(program.id, program, "search", (4,), None)]))
        assert "\n" not in str(err.value) and executor.restarts == 0
    finally:
        executor.close()
    assert not ray.is_initialized()


@pytest.mark.slow
def test_tiny_preset_end_to_end_through_the_cli(tmp_path):
    out = tmp_path / "tiny"
    done = subprocess.run(
        [sys.executable, "-m", "metacurio", "search", "--preset", "tiny", "--workers", "2", "--quiet", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with RunStore.open(out) as store:
        assert store.config() == TINY
        steps = [step for step, _, _ in store.funnel()]
        assert steps[0] == "enumerated" and steps[-1] == "unique" and "candidates" in steps
        unique = store.programs("unique")
        assert len(store.decided("search")) == min(TINY.limit, len(unique))
        assert len(store.decided("fresh")) == min(TINY.fresh_top_k, sum(d == "completed" for d in store.decided("search").values()))
        assert f"run {out}: programs decided per stage: search" in done.stdout


def one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    return captured.err.strip()


def test_resume_without_a_run_is_a_one_line_error(tmp_path, capsys):
    message = one_line_error(capsys, ["search", "--resume", "--out", str(tmp_path)])
    assert message == f"metacurio: error: not a metacurio run directory: {tmp_path}"
    (tmp_path / st.FILE).write_text("garbage " * 200)
    assert one_line_error(capsys, ["search", "--resume", "--out", str(tmp_path)]) == message


def test_malformed_config_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"colour": "blue"}))
    message = one_line_error(capsys, ["search", "--config", str(bad), "--out", str(tmp_path / "run")])
    assert message == f"metacurio: error: config file {bad}: unknown config field 'colour'"
    bad.write_text("{not json")
    assert "is not valid JSON" in one_line_error(capsys, ["search", "--config", str(bad), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_a_stored_config_that_is_malformed_is_a_one_line_error(finished, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(finished[0], copy)
    db = sqlite3.connect(copy / st.FILE)
    with db:
        db.execute("UPDATE meta SET value = '{\"top_k\": 3}' WHERE key = 'config'")
    db.close()
    message = one_line_error(capsys, ["search", "--resume", "--out", str(copy)])
    assert message == f"metacurio: error: run {copy} has a malformed config: config lacks field 'batch_size'"


def test_a_fresh_start_refuses_an_existing_run_and_resume_refuses_other_settings(finished, capsys):
    run_dir, _ = finished
    message = one_line_error(capsys, ["search", "--programs", "fast", "--out", str(run_dir)])
    assert message == f"metacurio: error: run directory {run_dir} already holds a run; resume it with --resume or pick another --out"
    message = one_line_error(capsys, ["search", "--resume", "--preset", "tiny", "--out", str(run_dir)])
    assert message.startswith(f"metacurio: error: run {run_dir} was started with ")
    message = one_line_error(capsys, ["search", "--resume", "--programs", "fast", "--out", str(run_dir)])
    assert message.startswith(f"metacurio: error: run {run_dir} was started with other programs")


def test_programs_of_another_space_are_refused(tmp_path, capsys):
    message = one_line_error(capsys, ["search", "--programs", "fast", "combiner_sum", "--out", str(tmp_path / "run")])
    assert message.endswith("is a combiner program; this search is over curiosity")
    assert not (tmp_path / "run").exists()
