"""The run store: schema, round trips, hand-computed aggregates, one-line errors; and the config."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3

import pytest

from search import store as st
from search.config import PAPER, PRESETS, TINY, ConfigError, SearchConfig, from_dict, preset
from search.store import EvaluationRow, ProgramRow, RunStore, StoreError


def evaluation(pid, seed, score, stage="search", stopped=False, error=None, curve=(1.0, 2.0)):
    return EvaluationRow(pid, stage, "gridworld-empty", seed, score, curve, (12, 24), stopped, error, 120, 0.5, "w", 1.0)


def program(pid, position, status="unique", class_of=None, error=None):
    return ProgramRow(pid, position, 2, "Add Neg", "{}", status, class_of, error)


@pytest.fixture
def store(tmp_path):
    with RunStore.create(tmp_path / "run", TINY, "metacurio search --preset tiny") as s:
        yield s


def test_schema_is_the_shared_data_model(store):
    db = sqlite3.connect(store.run_dir / st.FILE)
    tables = ("meta", "funnel", "programs", "evaluations", "decisions")
    columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}
    assert columns == {
        "meta": ["key", "value"],
        "funnel": ["position", "step", "count", "detail"],
        "programs": ["id", "position", "size", "ops", "json", "status", "class_of", "error"],
        "evaluations": [
            "program_id", "stage", "env", "seed", "score", "curve", "checkpoint_steps", "stopped_early",
            "error", "env_steps", "seconds", "worker", "created",
        ],
        "decisions": ["program_id", "stage", "decision", "detail", "created"],
    }  # fmt: skip
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert set(json.loads(store.meta("versions"))) >= {"python", "jax", "ray"}
    assert store.meta("command") == "metacurio search --preset tiny"
    assert sorted(p.name for p in store.run_dir.iterdir() if "partial" in p.name) == []


def test_config_round_trips_through_the_store(store):
    assert store.config() == TINY
    with RunStore.open(store.run_dir) as again:
        assert again.config() == TINY


def test_candidates_and_funnel_keep_their_order(store):
    funnel = [("enumerated", 10, "all"), ("pruned: unused input", 4, "why"), ("candidates", 6, ""), ("unique", 3, "")]
    rows = [program("b", 0), program("a", 1, "duplicate", class_of="b"), program("c", 2, "failed", error="boom")]
    store.write_candidates(funnel, rows, {"layout": "{}"})
    assert store.funnel() == funnel
    assert store.programs() == rows
    assert [p.id for p in store.programs("duplicate")] == ["a"]
    assert store.meta("layout") == "{}"


def test_outcomes_aggregate_by_hand(store):
    store.record_outcome("p", "search", [evaluation("p", 4, 10.0), evaluation("p", 104, 14.0)], "completed", "")
    stopped = [evaluation("q", 4, 30.0, stopped=True), evaluation("q", 104, 30.0, stopped=True)]
    store.record_outcome("q", "search", stopped, "stopped", "{}")
    store.record_outcome("r", "search", [evaluation("r", 4, None, error="E"), evaluation("r", 104, None, error="E")], "failed", "E")
    store.record_outcome("p", "fresh", [evaluation("p", 5, 7.0, stage="fresh")], "completed", "")
    p, q, r = store.program_results("search")
    assert (p.mean, p.stderr, p.trials, p.stopped_early, p.error) == (12.0, 2.0, 2, False, None)
    assert (q.mean, q.stderr, q.stopped_early, q.env_steps, q.seconds) == (30.0, 0.0, True, 240, 1.0)
    assert math.isnan(r.mean) and r.error == "E"
    assert [x.program_id for x in store.ranking("search")] == ["q", "p"]
    assert [x.mean for x in store.program_results("fresh")] == [7.0]
    assert store.decided("search") == {"p": "completed", "q": "stopped", "r": "failed"}
    assert [e.curve for e in store.evaluations("fresh")] == [(1.0, 2.0)]
    assert store.evaluations("search")[0].checkpoint_steps == (12, 24)


def test_ranking_ties_break_by_id(store):
    for pid in ("z", "m", "a"):
        store.record_outcome(pid, "search", [evaluation(pid, 4, 5.0)], "completed", "")
    assert [r.program_id for r in store.ranking()] == ["a", "m", "z"]


def test_an_evaluation_key_is_written_once(store):
    store.record_outcome("p", "search", [evaluation("p", 4, 1.0)], "completed", "")
    with pytest.raises(sqlite3.IntegrityError):
        store.record_outcome("p", "search", [evaluation("p", 4, 1.0)], "completed", "")
    # The failed transaction left nothing behind.
    assert len(store.evaluations()) == 1 and len(store.decisions()) == 1


def test_transfer_rows_have_no_decision_and_are_written_once(store):
    row = evaluation("p", 4, 3.0, stage=st.TRANSFER)
    store.record_transfer(row)
    assert store.evaluations(st.TRANSFER) == [row] and store.decisions() == []
    with pytest.raises(sqlite3.IntegrityError):
        store.record_transfer(row)
    with pytest.raises(ValueError, match="^a transfer row must have stage 'transfer', not 'search'$"):
        store.record_transfer(evaluation("p", 4, 3.0))
    with pytest.raises(ValueError, match="unknown stage 'transfer'"):
        store.record_outcome("p", st.TRANSFER, [evaluation("q", 4, 3.0, stage=st.TRANSFER)], "completed", "")
    assert store.evaluations() == [row]


def test_selection_rows_carry_batch_and_cutoffs(store):
    store.record_selection(3, [("p", 12.5, False), ("q", math.nan, True)], (math.nan, 4.0))
    details = {d.program_id: json.loads(d.detail) for d in store.decisions("select")}
    assert details["p"] == {"batch": 3, "predicted": 12.5, "random": False, "cutoffs": [None, 4.0]}
    assert details["q"]["predicted"] is None and details["q"]["random"] is True
    assert store.decided("search") == {}


def test_create_stores_extra_meta(tmp_path):
    with RunStore.create(tmp_path, TINY, "c", {"source": "programs"}) as s:
        assert (s.meta("source"), s.meta("config")) == ("programs", TINY.to_json())


def test_create_refuses_an_existing_run(store):
    with pytest.raises(StoreError, match="already holds a run"):
        RunStore.create(store.run_dir, TINY, "")


@pytest.mark.parametrize("content", [None, b"", b"this is not sqlite at all" * 100])
def test_open_rejects_what_is_not_a_run(tmp_path, content):
    if content is not None:
        (tmp_path / st.FILE).write_bytes(content)
    with pytest.raises(StoreError) as err:
        RunStore.open(tmp_path)
    assert str(err.value) == f"not a metacurio run directory: {tmp_path}"
    assert content is not None or not (tmp_path / st.FILE).exists()


def test_open_rejects_a_store_without_config(tmp_path):
    sqlite3.connect(tmp_path / st.FILE).executescript(st.SCHEMA)
    with pytest.raises(StoreError, match="^not a metacurio run directory: "):
        RunStore.open(tmp_path)


def test_open_names_a_malformed_config(store):
    store.set_meta({"config": json.dumps({**json.loads(TINY.to_json()), "epsilon": 3})})
    with pytest.raises(StoreError, match=r"malformed config: config field epsilon must be in \[0, 1\], got 3$"):
        RunStore.open(store.run_dir)


def test_config_json_round_trip_and_presets():
    for config in PRESETS.values():
        assert SearchConfig.from_json(config.to_json()) == config
    assert preset("paper") == PAPER
    assert (PAPER.max_ops, PAPER.seeds, PAPER.top_k, PAPER.batch_size, PAPER.epsilon) == (7, (4, 104, 204, 304, 404), 250, 56, 0.1)
    assert (PAPER.lifetime_steps, PAPER.checkpoint_every, PAPER.ppo().num_updates) == (1000, 108, 83)
    assert TINY.max_ops <= 4 and len(TINY.seeds) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [4, 4]}, "seeds repeats a seed"),
        ({"fresh_seeds": [4]}, "must not share a seed"),
        ({"batch_size": 0}, "batch_size must be an integer ≥ 1"),
        ({"limit": 0}, "limit must be an integer ≥ 1"),
        ({"dedup": "yes"}, "dedup must be true or false"),
        ({"space": "maze"}, "space must be one of curiosity, combiner"),
        ({"env": "maze"}, "env must be one of"),
        ({"num_stdevs": math.inf}, "num_stdevs must be a finite number"),
        ({"lifetime_steps": 5}, "impossible agent"),
    ],
)
def test_bad_configs_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({**dataclasses.asdict(TINY), **change})


def test_config_json_must_name_every_field_and_only_those():
    data = dataclasses.asdict(TINY)
    with pytest.raises(ConfigError, match="unknown config field 'colour'"):
        from_dict({**data, "colour": 1})
    del data["top_k"]
    with pytest.raises(ConfigError, match="config lacks field 'top_k'"):
        from_dict(data)
    with pytest.raises(ConfigError, match="not valid JSON"):
        SearchConfig.from_json("{")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")
