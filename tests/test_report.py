"""The run report and export on a small synthetic run whose every number is known."""

import csv
import json
import sqlite3

import pytest

from metacurio.app import cli
from metacurio.app.report.data import DEFAULT, ReportConfig, funnel, load, pruning
from metacurio.app.report.export import export
from metacurio.app.report.data import paired_difference
from metacurio.app.report.sections import locate, recheck_top, section_controls, section_elimination, section_recall
from metacurio.app.report.write import write_report
from metacurio.core import program_io
from search import store as st
from search.config import TINY
from search.store import EvaluationRow, ProgramRow, RunStore
from helpers import reference_programs

SEEDS = (4, 104)
STEPS = (48, 96, 144)
FULL_ROW = 144 * 2  # env steps of one full trial: 144 steps × 2 environments
ENV = TINY.env_name

# name -> (search decision, per-seed final scores); curves rise linearly to the final score.
SEARCH = {
    "icm": (st.COMPLETED, (78.0, 82.0)),
    "rnd": (st.COMPLETED, (60.0, 70.0)),
    "fast": (st.COMPLETED, (50.0, 50.0)),
    "disagreement": (st.STOPPED, (10.0, 12.0)),
    "inverse_model": (st.STOPPED, (5.0, 7.0)),
    "knn_novelty": (st.FAILED, None),
}
RECHECK = {"disagreement": (88.0, 92.0), "inverse_model": (20.0, 22.0)}
FRESH = {"icm": (70.0, 70.0), "rnd": (74.0, 76.0)}
FUNNEL = [
    ("enumerated", 100, "typed programs of ≤ 4 ops"),
    ("pruned: no reward", 60, ""),
    ("pruned: unused state", 25, ""),
    ("candidates", 15, ""),
    ("duplicates", 8, "behavioural classes merged"),
    ("unique", 7, ""),
]


def _rows(program_id, stage, scores, stopped=False):
    reached = STEPS[:1] if stopped else STEPS
    return [
        EvaluationRow(
            program_id, stage, ENV, seed, score, tuple(score * (i + 1) / len(reached) for i in range(len(reached))),
            reached, stopped, None, reached[-1] * 2, 1.0, "w0", 0.0,
        )  # fmt: skip
        for seed, score in zip(SEEDS, scores)
    ]


@pytest.fixture(scope="module")
def programs():
    return reference_programs("curiosity")


@pytest.fixture()
def run_dir(tmp_path, programs):
    run = tmp_path / "demo"
    store = RunStore.create(run, TINY, "metacurio search --preset tiny")
    ids = {name: p.id for name, p in programs.items()}
    rows = []
    for position, name in enumerate(sorted(programs)):
        program = programs[name]
        status, class_of = ("duplicate", ids["icm"]) if name == "ccim" else ("unique", None)
        ops = " ".join(n.op for n in program.nodes)
        rows.append(ProgramRow(program.id, position, program.size, ops, _json(program), status, class_of, None))
    store.write_candidates(FUNNEL, rows, {})
    store.record_selection(0, [(ids[n], float("nan"), True) for n in SEARCH], [])
    for name, (decision, scores) in SEARCH.items():
        if decision == st.FAILED:
            failed = [EvaluationRow(ids[name], st.SEARCH, ENV, s, None, (), (), False, "boom", 0, 0.0, "w0", 0.0) for s in SEEDS]
            store.record_outcome(ids[name], st.SEARCH, failed, st.FAILED, "boom")
            continue
        stopped = decision == st.STOPPED
        detail = json.dumps({"checkpoint": 0, "step": 48, "mean": sum(scores) / 2, "cutoff": 30.0}) if stopped else "{}"
        store.record_outcome(ids[name], st.SEARCH, _rows(ids[name], st.SEARCH, scores, stopped), decision, detail)
    for stage, results in ((st.RECHECK, RECHECK), (st.FRESH, FRESH)):
        for name, scores in results.items():
            store.record_outcome(ids[name], stage, _rows(ids[name], stage, scores), st.COMPLETED, "{}")
    store.close()
    return run


def _json(program):
    from metacurio.core import program_io

    return program_io.to_json(program)


def test_funnel_counts(run_dir):
    data = load(run_dir)
    steps = {step: count for step, count, _ in funnel(data, top_k=2)}
    data.store.close()
    stages = [s for s, _, _ in FUNNEL if not s.startswith("pruned: ")]
    assert [s for s, _, _ in funnel(load(run_dir), 2)][:4] == stages
    rules = pruning(load(run_dir))
    assert [(r, c) for r, c, _ in rules] == [("no reward", 60), ("unused state", 25)]
    assert steps["evaluated"] == 6
    assert steps["failed in evaluation"] == 1
    assert steps["stopped early"] == 2
    assert steps["completed"] == 3
    assert steps["top"] == 2


def test_ranking_is_completed_programs_best_first(run_dir, programs):
    data = load(run_dir)
    assert [r.program_id for r in data.ranking] == [programs[n].id for n in ("icm", "rnd", "fast")]
    assert data.ranking[0].mean == pytest.approx(80.0) and data.ranking[0].stderr == pytest.approx(2.0)
    data.store.close()


def test_report_writes_markdown_and_figures(run_dir, programs):
    written = write_report(run_dir, ReportConfig(top_k=2, recall_min_programs=3), [("FAST", programs["fast"])])
    names = {p.name for p in written if p.parent == run_dir}
    assert names == {"report.md", "funnel.png", "scores.png", "sorted_scores.png", "curves.png"}
    assert all(p.stat().st_size > 0 for p in written)
    icm_id, rnd_id = programs["icm"].id, programs["rnd"].id
    top_files = {p.name for p in written if p.parent == run_dir / "top"}
    assert top_files == {f"{r}-{i}.{ext}" for r, i in (("01", icm_id), ("02", rnd_id)) for ext in ("json", "txt", "dot")}
    assert program_io.load(run_dir / "top" / f"01-{icm_id}.json").id == icm_id
    assert not list(run_dir.glob("*.tmp"))
    text = (run_dir / "report.md").read_text()
    icm, rnd, fast = (programs[n].id for n in ("icm", "rnd", "fast"))

    assert "| enumerated | 100 |" in text and "| no reward | 60 |" in text
    assert "| stopped early | 2 |" in text and "| completed | 3 |" in text

    top = text[text.index("## Top programs") : text.index("### Pseudo-code")]
    assert top.index(icm) < top.index(rnd) and fast not in top
    assert f"| 1 | `{icm}` | {programs['icm'].size} | 80.0 ± 2.0 | 70.0 ± 0.0 | batch 0, random |" in top
    assert "# ICM" in text  # the pseudo-code dump of the best program

    fresh = text[text.index("## Top programs on fresh seeds") :]
    assert fresh.index(f"| 1 | `{rnd}` | 2 |") < fresh.index(f"| 2 | `{icm}` | 1 |")

    assert f"| FAST | `{fast}` | rank 3 of 3 completed (50.0 ± 0.0) | none in the space |" in text

    # Stopped rows ran 48 of 144 steps: 4 trials × 96 steps × 2 envs saved.
    run_steps = 6 * FULL_ROW + 4 * 48 * 2
    assert f"simulated {run_steps:,} env steps instead of {run_steps + 4 * 96 * 2:,}" in text
    # Two of three completed programs are the top (TINY carries 2 to fresh seeds): threshold rnd's 65.
    assert (
        "Re-checked in full: 2 of the 2 stopped programs. Threshold: the 2 best completed programs (the larger of the"
        " top 1% and the 2 carried to fresh seeds), coverage ≥ 65.0. **Failed: early stopping lost 1 of the"
        " re-checked programs.** 1 would have been in that top" in text
    )
    assert "Too few re-checked" not in text
    assert f"| `{programs['disagreement'].id}` | 90.0 ± 2.0 | step 48 (mean 11.0 < cutoff 30.0) |" in text

    assert "| 50% |" in text  # the recall table, allowed here with 3 programs


def test_recall_needs_enough_completed_programs(run_dir):
    data = load(run_dir)
    assert "Too few completed programs (3)" in "\n".join(section_recall(data, DEFAULT))
    data.store.close()


def test_locate_duplicates_stopped_failed_and_outside(run_dir, programs):
    data = load(run_dir)
    icm = programs["icm"].id
    duplicate = locate(data, programs["ccim"].id)
    assert duplicate == f"a behavioural duplicate of `{icm}`, which is rank 1 of 3 completed (80.0 ± 2.0)"
    assert locate(data, programs["inverse_model"].id).startswith("stopped early at step 48")
    assert locate(data, programs["knn_novelty"].id) == "failed in evaluation: boom"
    assert locate(data, "0123456789ab") == "outside the searched space (not enumerated)"
    data.store.close()


def test_cli_report_locates_reference_programs(run_dir, programs, capsys):
    assert cli.main(["report", str(run_dir), "--top", "1", "--locate", "fast", "ccim"]) == 0
    assert "wrote" in capsys.readouterr().out
    text = (run_dir / "report.md").read_text()
    assert "| CCIM |" in text and "behavioural duplicate" in text


def test_export_csv_one_row_per_evaluation(run_dir, programs, tmp_path):
    out = tmp_path / "evals.csv"
    assert cli.main(["export", str(run_dir), "--format", "csv", "--out", str(out)]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == (6 + 2 + 2) * len(SEEDS)  # search, recheck and fresh programs
    icm = [r for r in rows if r["program_id"] == programs["icm"].id and r["stage"] == st.SEARCH]
    assert len(icm) == 2 and icm[0]["size"] == str(programs["icm"].size)
    assert icm[0]["text"].startswith("# ICM") and json.loads(icm[0]["checkpoint_steps"]) == list(STEPS)


def test_export_parquet_keeps_curves_as_lists(run_dir, programs):
    import pyarrow.parquet as pq

    path, count = export(run_dir, "parquet")
    table = pq.read_table(path)
    assert path == run_dir / "evaluations.parquet" and table.num_rows == count == 20
    rows = [r for r in table.to_pylist() if r["program_id"] == programs["rnd"].id and r["stage"] == st.FRESH]
    assert [r["seed"] for r in rows] == list(SEEDS)
    assert rows[1]["curve"] == pytest.approx([76 / 3, 152 / 3, 76.0]) and rows[1]["checkpoint_steps"] == list(STEPS)


@pytest.mark.parametrize("damage", ["empty dir", "garbage file", "no tables"])
def test_malformed_run_dir_is_a_one_line_error(tmp_path, capsys, damage):
    run = tmp_path / "bad"
    run.mkdir()
    if damage == "garbage file":
        (run / "store.sqlite").write_bytes(b"not a database at all" * 100)
    if damage == "no tables":
        with sqlite3.connect(run / "store.sqlite") as db:
            db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
            db.execute("INSERT INTO meta VALUES ('config', ?)", (TINY.to_json(),))
        db.close()
    for argv in (["report", str(run)], ["export", str(run), "--format", "csv"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("metacurio: error:") and err.count("\n") == 1
    assert not (run / "report.md").exists()


def test_the_recheck_top_is_never_a_single_program():
    assert recheck_top(completed=90, fresh_top_k=20, top_fraction=0.01) == 20
    assert recheck_top(completed=5000, fresh_top_k=20, top_fraction=0.01) == 50
    assert recheck_top(completed=3, fresh_top_k=20, top_fraction=0.01) == 3


def test_a_recheck_of_too_few_programs_passes_but_says_it_proves_little(run_dir, programs):
    db = sqlite3.connect(run_dir / st.FILE)
    with db:
        for table in ("evaluations", "decisions"):
            db.execute(f"DELETE FROM {table} WHERE stage = 'recheck' AND program_id = ?", (programs["disagreement"].id,))
    db.close()
    data = load(run_dir)
    text = "\n".join(section_elimination(data, DEFAULT))
    data.store.close()
    assert "Re-checked in full: 1 of the 2 stopped programs." in text
    assert "**Passed: no re-checked program would have made the top.** 0 would have been in that top" in text
    assert "Too few re-checked to trust a pass: a check needs at least 20 stopped programs (or all of them)" in text


# Controls: (per-seed scores on SEEDS) of the control programs on the search seeds.
CONTROLS = {"none": (30.0, 40.0), "fast": (70.0, 90.0)}


def _add_controls(run_dir, programs):
    store = RunStore.open(run_dir)
    stored = {programs[n].id: {"name": n, "json": _json(programs[n])} for n in CONTROLS}
    store.set_meta({st.CONTROLS_META: json.dumps(stored)})
    for name, scores in CONTROLS.items():
        pid = programs[name].id
        store.record_outcome(pid, st.CONTROL_SEARCH, _rows(pid, st.CONTROL_SEARCH, scores), st.COMPLETED, "{}")
    store.close()


def test_paired_differences_against_the_controls_come_from_the_stored_rows(run_dir, programs):
    _add_controls(run_dir, programs)
    data = load(run_dir)
    text = "\n".join(section_controls(data, ReportConfig(top_k=3)))
    data.store.close()
    # ICM (78, 82) − plain PPO (30, 40): differences 48 and 42, mean 45, s.e. 3, t(0.975, 1) = 12.706.
    assert "**+45.0 [+6.9, +83.1]**" in text
    # RND (60, 70) − plain PPO: 30 on both seeds, no spread, so no interval and not resolved.
    assert "| +30.0 (same on all 2 seeds, no interval) |" in text
    # ICM − FAST (70, 90): +8 and −8, unresolved, not bold.
    assert "| +0.0 [-101.6, +101.6] |" in text
    assert "Against none: 1 of these 3 programs resolved above it, 0 below, 2 unresolved." in text
    assert "Against fast: 0 of these 3 programs resolved above it, 0 below, 3 unresolved." in text
    # No control ran on the fresh seeds, so the fresh programs get no comparison at all.
    assert "Programs against the controls on the fresh seeds" not in text


def test_a_difference_needs_two_shared_seeds():
    rows = _rows("p", st.SEARCH, (1.0, 2.0))
    other = [r for r in _rows("c", st.CONTROL_SEARCH, (0.0, 0.0)) if r.seed == SEEDS[0]]
    assert paired_difference(rows, other) is None
    difference = paired_difference(rows, _rows("c", st.CONTROL_SEARCH, (0.0, 0.0)))
    assert (difference.mean, difference.seeds) == (1.5, 2) and not difference.resolved


def test_a_run_without_controls_says_so(run_dir):
    data = load(run_dir)
    assert "evaluated no control programs" in "\n".join(section_controls(data, DEFAULT))
    data.store.close()


def test_export_includes_the_controls_rows(run_dir, programs, tmp_path):
    _add_controls(run_dir, programs)
    path, count = export(run_dir, "csv", tmp_path / "all.csv")
    rows = list(csv.DictReader(path.open()))
    controls = [r for r in rows if r["stage"] == st.CONTROL_SEARCH]
    assert len(controls) == len(CONTROLS) * len(SEEDS) and count == len(rows)
    none = next(r for r in controls if r["program_id"] == programs["none"].id)
    assert (none["size"], none["ops"]) == ("1", "Identity")


TRANSFER_SCORES = {"none": (1.0, 2.0, 3.0), "icm": (9.0, 12.0, 12.0), "rnd": (21.0, 22.0, 23.0), "fast": (2.0, 1.0, 0.0)}
"""Per-seed transfer returns on seeds 4, 104, 204."""


def _add_transfer(run_dir, programs):
    store = RunStore.open(run_dir)
    names = {programs[n].id: {"name": n, "json": _json(programs[n])} for n in TRANSFER_SCORES}
    settings = {"preset": {"ppo": {"num_envs": 5, "rollout_steps": 256, "lifetime_steps": 9984}, "max_episode_steps": 500}, "combiner": "ffd6798c8127"}
    store.set_meta({st.TRANSFER_PROGRAMS_META: json.dumps(names), "transfer:LunarLander-v3/paper": json.dumps(settings)})
    for name, scores in TRANSFER_SCORES.items():
        for seed, score in zip((4, 104, 204), scores):
            row = EvaluationRow(programs[name].id, st.TRANSFER, "LunarLander-v3/paper", seed, score, (score / 2, score), (128, 256), False, None, 1280, 1.0, "w0", 0.0)
            store.record_transfer(row)
    fast = programs["fast"].id
    store.record_outcome(fast, st.FRESH, _rows(fast, st.FRESH, (50.0, 52.0)), st.COMPLETED, "{}")
    store.close()


def test_transfer_section_pairs_with_plain_ppo_and_correlates_with_the_gridworld(run_dir, programs):
    from metacurio.app.report.sections import section_transfer

    _add_transfer(run_dir, programs)
    data = load(run_dir)
    text = "\n".join(section_transfer(data))
    data.store.close()
    assert "### LunarLander-v3 (paper budget)" in text
    assert "5 env(s) × 39 PPO updates of 256 steps (9,984 steps per env), episodes cut at 500 steps" in text
    # RND (21, 22, 23) − plain PPO (1, 2, 3): 20 on every seed, no spread, so no interval.
    assert f"| rnd | `{programs['rnd'].id}` | 22.0 ± 0.6 | +20.0 (same on all 3 seeds, no interval) | 3 | 75.0 ± 1.0 |" in text
    # ICM − plain PPO: 8, 10, 9, mean 9, s.e. 1/√3, t(0.975, 2) = 4.303: [6.5, 11.5], resolved.
    assert "| **+9.0 [+6.5, +11.5]** |" in text
    # FAST − plain PPO: 1, −1, −3: mean −1, s.e. 2/√3 · ... unresolved.
    assert "Against plain PPO: 1 of 3 programs resolve above it, 0 below, 2 unresolved." in text
    # Gridworld (fresh) order fast 51 < icm 70 < rnd 75, the same as the returns: ρ = +1.
    assert "over the 3 programs with both: +1.00" in text
    rows = text.splitlines()
    order = [line.split("|")[1].strip() for line in rows if line.startswith("| ") and "`" in line]
    assert order == ["rnd", "icm", "none", "fast"]


def test_report_draws_the_transfer_figures_only_when_there_are_transfers(run_dir, programs):
    assert not any(p.name.startswith("transfer") for p in write_report(run_dir))
    _add_transfer(run_dir, programs)
    written = {p.name for p in write_report(run_dir)}
    assert {"transfer_curves.png", "transfer_scatter.png"} <= written
    assert "## Transfer" in (run_dir / "report.md").read_text()


def test_deep_sea_table_counts_finds_and_first_find_episodes(run_dir, programs):
    from metacurio.app.report.sections import section_transfer

    store = RunStore.open(run_dir)
    settings = {"preset": {"ppo": {"num_envs": 8, "rollout_steps": 10, "lifetime_steps": 40}}, "combiner": "ffd6798c8127"}
    names = {programs[n].id: {"name": n, "json": _json(programs[n])} for n in ("rnd", "none")}
    store.set_meta({"transfer:DeepSea-10/reduced": json.dumps(settings), st.TRANSFER_PROGRAMS_META: json.dumps(names)})
    # Cumulative treasures after each of 4 episode rounds: rnd finds in rounds 2 and 4, plain PPO never.
    curves = {"rnd": {4: (0, 1, 3, 6), 104: (0, 0, 0, 1), 204: (0, 0, 0, 0)}, "none": {4: (0, 0, 0, 0), 104: (0, 0, 0, 0), 204: (0, 0, 0, 0)}}
    for name, by_seed in curves.items():
        for seed, curve in by_seed.items():
            row = EvaluationRow(programs[name].id, st.TRANSFER, "DeepSea-10/reduced", seed, 0.0, tuple(map(float, curve)), (10, 20, 30, 40), False, None, 320, 1.0, "w0", 0.0)
            store.record_transfer(row)
    store.close()
    data = load(run_dir)
    text = "\n".join(section_transfer(data))
    data.store.close()
    assert "DeepSea-10 (reduced): 8 env(s) × 4 PPO updates of 10 steps (40 steps per env)" in text
    # rnd: found on 2 of 3 seeds, after 2 and 4 rounds of 8 episodes: 16 and 32, median 24.
    assert f"| rnd | `{programs['rnd'].id}` | 2/3, 24 (16–32) |" in text
    assert f"| none | `{programs['none'].id}` | 0/3 |" in text
