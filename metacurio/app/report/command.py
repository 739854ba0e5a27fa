"""The ``metacurio report`` and ``metacurio export`` subcommands."""

from __future__ import annotations

import dataclasses

from metacurio.app.report.data import DEFAULT
from metacurio.app.report.export import FORMATS, export
from metacurio.core import program_io

REFERENCE_PROGRAMS = ("fast", "ccim")
"""Reference programs whose place in a run the report gives by default."""


def add_parsers(sub) -> None:
    """Register ``report`` and ``export`` on the ``metacurio`` subcommand parser."""
    report_parser = sub.add_parser("report", help="write RUN/report.md with its figures: funnel, top programs, savings")
    report_parser.add_argument("run", help="run directory (runs/NAME)")
    report_parser.add_argument(
        "--top", type=int, default=DEFAULT.top_k, help="programs in the top table and plots (default %(default)s)"
    )
    report_parser.add_argument(
        "--locate",
        nargs="*",
        default=list(REFERENCE_PROGRAMS),
        metavar="PROGRAM",
        help="reference programs (names in results/programs or JSON files) to find in the run (default: fast ccim)",
    )
    report_parser.set_defaults(func=cmd_report)

    export_parser = sub.add_parser(
        "export", help="write one row per evaluation of a run (with program size, ops, pseudo-code)"
    )
    export_parser.add_argument("run", help="run directory (runs/NAME)")
    export_parser.add_argument("--format", choices=FORMATS, default="parquet")
    export_parser.add_argument("--out", help="output file (default RUN/evaluations.FORMAT)")
    export_parser.set_defaults(func=cmd_export)


def cmd_report(args) -> None:
    # The report plots through matplotlib; loaded here, the parser and `export` start without it.
    from metacurio.app.report.write import write_report

    references = []
    for spec in args.locate:
        program = program_io.resolve(spec)
        references.append((program.name or spec, program))
    for path in write_report(args.run, dataclasses.replace(DEFAULT, top_k=args.top), references):
        print(f"wrote {path}")


def cmd_export(args) -> None:
    path, rows = export(args.run, args.format, args.out)
    print(f"wrote {rows} evaluations to {path}")
