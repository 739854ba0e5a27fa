"""``metacurio export``: every evaluation of a run as one table row, in Parquet or CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path

from metacurio.app.report.data import RunData, load
from metacurio.core import program_io
from metacurio.core import render
from search.store import EvaluationRow, StoreError

FORMATS = ("parquet", "csv")

EXPORT_COLUMNS = (
    "program_id", "size", "ops", "text", "stage", "env", "seed", "score", "stopped_early", "error",
    "env_steps", "seconds", "worker", "created", "curve", "checkpoint_steps",
)  # fmt: skip


def export_rows(run_dir: str | Path) -> list[dict]:
    """One dict per evaluation row, with the program's size, ops and pseudo-code."""
    data = load(run_dir)
    try:
        described: dict[str, tuple[int, str, str]] = {}
        return [_record(data, row, described) for stage in sorted(data.rows) for row in data.rows[stage]]
    finally:
        data.store.close()


def _record(data: RunData, row: EvaluationRow, described: dict[str, tuple[int, str, str]]) -> dict:
    """One evaluation as an export record; ``described`` keeps each program's size, ops and
    pseudo-code, rendered once."""
    if row.program_id not in described:
        described[row.program_id] = _describe(data, row.program_id)
    size, ops, text = described[row.program_id]
    record = dataclasses.asdict(row)
    record.update(size=size, ops=ops, text=text)
    record["curve"] = list(row.curve)
    record["checkpoint_steps"] = list(row.checkpoint_steps)
    return {column: record[column] for column in EXPORT_COLUMNS}


def _describe(data: RunData, program_id: str) -> tuple[int, str, str]:
    """(size, ops, pseudo-code) of a searched program, a control, or a transferred one."""
    row = data.programs.get(program_id)
    if row is not None:
        return row.size, row.ops, render.to_text(program_io.from_json(row.json))
    if program_id not in data.outside_programs:
        raise StoreError(f"run store in {data.run_dir} has an evaluation of unknown program {program_id}")
    text = data.outside_programs[program_id]
    if text is None:
        return 0, "", "plain PPO: no intrinsic reward"
    program = program_io.from_json(text)
    return program.size, " ".join(node.op for node in program.nodes), render.to_text(program)


def export(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> tuple[Path, int]:
    """Write every evaluation of a run as Parquet or CSV; returns (path, rows)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    records = export_rows(run_dir)
    path = Path(out) if out else Path(run_dir) / f"evaluations.{fmt}"
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "csv":
        _write_csv(records, tmp)
    else:
        _write_parquet(records, tmp)
    os.replace(tmp, path)
    return path, len(records)


def _write_csv(records: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for record in records:
        flat = dict(record)
        flat["curve"] = json.dumps(record["curve"])
        flat["checkpoint_steps"] = json.dumps(record["checkpoint_steps"])
        flat["stopped_early"] = int(record["stopped_early"])
        writer.writerow(flat)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _write_parquet(records: list[dict], path: Path) -> None:
    # pyarrow is heavy and only Parquet needs it: a CSV export never loads it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("program_id", pa.string()), ("size", pa.int64()), ("ops", pa.string()), ("text", pa.string()),
            ("stage", pa.string()), ("env", pa.string()), ("seed", pa.int64()), ("score", pa.float64()),
            ("stopped_early", pa.bool_()), ("error", pa.string()), ("env_steps", pa.int64()), ("seconds", pa.float64()),
            ("worker", pa.string()), ("created", pa.float64()), ("curve", pa.list_(pa.float64())),
            ("checkpoint_steps", pa.list_(pa.int64())),
        ]
    )  # fmt: skip
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)
