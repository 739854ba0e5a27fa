"""How much of a completed search's true top the predictor's order finds, by feature set.

    python benchmarks/predictor_recall.py PROGRAMS_DIR [--csv results/search-curiosity-5/evaluations.csv]

Replays the search offline (``search.predictor.simulate_recall``) over the programs that
completed its search stage, whose scores are known: programs are picked in batches by the
k-NN predictor (with ε random picks) or in random order, and the share of the true top found
after evaluating 25 % and 50 % of them is averaged over repeats. Feature sets compared: op
presence and pairs (the predictor before structure features) against ops plus structure
(``search.predictor.search_features``, what the search uses now). ``PROGRAMS_DIR`` holds one
``ID.json`` per completed program (e.g. written from the run's store, or by enumerating the
run's space and keeping its ids).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from metacurio.core import program_io
from search.predictor import default_vocabulary, program_features, search_features, simulate_recall

ROOT = Path(__file__).resolve().parents[1]


def completed_scores(csv_path: Path) -> dict[str, float]:
    """Mean search-stage score of every program that ran its whole lifetime without error."""
    trials: dict[str, list[dict]] = {}
    for row in csv.DictReader(csv_path.open(encoding="utf-8")):
        if row["stage"] == "search":
            trials.setdefault(row["program_id"], []).append(row)
    return {
        pid: statistics.fmean(float(r["score"]) for r in rows)
        for pid, rows in trials.items()
        if all(r["stopped_early"] in ("0", "False") and not r["error"] for r in rows)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("programs", help="folder of ID.json files, one per completed program")
    parser.add_argument("--csv", default=str(ROOT / "results/search-curiosity-5/evaluations.csv"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=28)
    args = parser.parse_args()
    scores = completed_scores(Path(args.csv))
    ids = sorted(scores)
    programs = [program_io.load(Path(args.programs) / f"{pid}.json") for pid in ids]
    assert [p.id for p in programs] == ids, "program files must hold the programs their names say"
    ops = [[node.op for node in p.nodes] for p in programs]
    vocabulary = sorted(set(default_vocabulary()).union(*map(set, ops)))
    feature_sets = {"ops and op pairs": program_features(ops, vocabulary), "ops, pairs and structure": search_features(programs)}
    print(f"{len(ids)} completed programs of {args.csv}; batches of {args.batch_size}, ε = 0.1, {args.repeats} repeats")
    print("| features | true top | predictor @25 % | random @25 % | predictor @50 % | random @50 % |")
    print("|---|---:|---:|---:|---:|---:|")
    for top_fraction in (0.01, 0.1):
        for name, features in feature_sets.items():
            result = simulate_recall(
                features, [scores[i] for i in ids], budgets=(0.25, 0.5), top_fraction=top_fraction,
                batch_size=args.batch_size, epsilon=0.1, seed=0, repeats=args.repeats,
            )  # fmt: skip
            p, r = result["predictor"], result["random"]
            print(
                f"| {name} | {top_fraction:.0%} ({result['top']}) | {p[0]:.2f} | {r[0]:.2f} | {p[1]:.2f} | {r[1]:.2f} |"
            )


if __name__ == "__main__":
    main()
