"""Layouts: typed register kinds and slot banks, unions, and encodings that name what does not fit."""

from __future__ import annotations

import pytest
from helpers import reference_programs

from metacurio.core.layout import (
    FEATURE,
    KINDS,
    OBS,
    SCALAR,
    WRITABLE,
    Layout,
    LayoutError,
    RegisterKind,
    SlotBank,
    encode,
    space_instructions,
)
from operations import types as T

CURIOSITY = reference_programs("curiosity")


def test_register_kinds_are_typed_values_with_their_value_types():
    assert str(RegisterKind("feature", 5)) == "list5_feature" and str(SCALAR) == "scalar"
    assert RegisterKind("feature", 5).value_type == T.ListOf(T.Feature) and FEATURE.value_type == T.Feature
    assert len(set(KINDS)) == len(KINDS) and OBS not in WRITABLE
    with pytest.raises(ValueError, match="never come in lists"):
        RegisterKind("obs", 5)
    with pytest.raises(ValueError, match="unknown register element"):
        RegisterKind("pixel")


def test_a_layout_holds_typed_kinds_and_banks():
    layout = Layout.for_programs(list(CURIOSITY.values()))
    assert all(isinstance(kind, RegisterKind) for kind, _ in layout.registers)
    assert all(isinstance(bank, SlotBank) for bank, _ in layout.banks)
    assert all(isinstance(kind, RegisterKind) for _, kinds in layout.instructions for kind in kinds)
    assert SlotBank("ObsNet") in dict(layout.banks)


def test_union_equals_the_layout_of_both_sets():
    a, b = [CURIOSITY["fast"], CURIOSITY["rnd"]], [CURIOSITY["knn_novelty"], CURIOSITY["disagreement"]]
    assert Layout.for_programs(a).union(Layout.for_programs(b)) == Layout.for_programs(a + b)


def test_the_space_dispatch_table_is_derived_once():
    assert space_instructions("curiosity") is space_instructions("curiosity")


def test_a_program_that_does_not_fit_is_named_with_what_it_lacks():
    layout = Layout.for_programs([CURIOSITY["rnd"]])
    assert layout.fits(CURIOSITY["rnd"]) and not layout.fits(CURIOSITY["fast"])
    with pytest.raises(LayoutError, match="which the layout lacks|nodes; the layout holds"):
        encode(CURIOSITY["fast"], layout)
