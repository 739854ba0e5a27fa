"""``metacurio report``'s output: RUN/report.md, the figures it shows and RUN/top/ with the top programs."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Sequence

from metacurio.app.report import plots, sections
from metacurio.app.report.data import DEFAULT, ReportConfig, RunData, load, parse_program
from metacurio.core import program_io
from metacurio.core import render
from metacurio.core.program import Program
from search.store import StoreError

REPORT_FILE = "report.md"


def write_report(
    run_dir: str | Path, report: ReportConfig = DEFAULT, references: Sequence[tuple[str, Program]] = ()
) -> list[Path]:
    """Write RUN/report.md, its PNGs and RUN/top/ (the top programs with their dumps); returns the paths
    written. ``references`` are (name, program) pairs to locate in the run."""
    data = load(run_dir)
    try:
        out = data.run_dir
        written = plots.plot_all(data, report, references, out)
        written.insert(0, _write_text(out / REPORT_FILE, sections.markdown(data, report, references)))
        written += write_top_programs(data, report, out / "top")
        return written
    except sqlite3.Error as err:
        raise StoreError(f"run store in {data.run_dir} is damaged: {err}") from None
    finally:
        data.store.close()


def write_top_programs(data: RunData, report: ReportConfig, folder: Path) -> list[Path]:
    """The top-k completed programs as JSON with their text and DOT dumps, named by rank and id."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, result in enumerate(data.ranking[: report.top_k], start=1):
        program = parse_program(data, result.program_id)
        stem = folder / f"{rank:02d}-{program.id}"
        written.append(_write_text(stem.with_suffix(".json"), program_io.to_json(program)))
        written.append(_write_text(stem.with_suffix(".txt"), render.to_text(program)))
        written.append(_write_text(stem.with_suffix(".dot"), render.to_dot(program)))
    return written


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
