"""The baselines table reads the paper's and the published code's scores as data and compares on the paper's counting."""

from __future__ import annotations

import json

import numpy as np

from metacurio.app import baselines


def test_reference_scores_are_data_with_their_sources():
    reference = json.loads(baselines.REFERENCE_SCORES.read_text(encoding="utf-8"))
    assert reference["paper"]["scores"]["fast"] == {"mean": 610.4, "stderr": 8.2}
    original = reference["original_code_here"]
    assert original["seeds"] == [4, 104, 204, 304, 404] and "torch 1.4" in original["source"]
    assert np.mean(original["scores"]["fast"]["trials"]) == original["scores"]["fast"]["mean"]


def test_comparisons_use_the_paper_counting_and_say_how_far_apart():
    reference = {
        "paper": {"scores": {"fast": {"mean": 600.0, "stderr": 3.0}}},
        "original_code_here": {"seeds": [4, 104], "scores": {"none": {"mean": 200.0}}},
    }
    lifetime, paper_counting = np.array([700.0, 700.0]), np.array([590.0, 594.0])
    rows = {
        "fast": ("FAST", lifetime, paper_counting, None),
        "none": ("No curiosity", lifetime, np.array([190.0, 200.0]), None),
    }
    lines = baselines.reading(rows, reference, (4, 104))
    # 592 ± 2 against 600 ± 3: −8 over a combined standard error of √13.
    assert lines[0].startswith("- **FAST** vs the paper: 592.0 ± 2.0 against 600.0 ± 3.0, a difference of -8.0 (-2.2 combined")
    assert lines[1].startswith("- **No curiosity** vs the published code on the same seed numbers (4, 104;")
    assert lines[1].endswith("195.0 against 200.0 (-5.0).")
    assert baselines.reading(rows, reference, (5, 105)) == lines[:1]
