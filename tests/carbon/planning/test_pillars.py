"""Each pillar changes one lever of a plan, and the selection folds into exactly those levers."""
from dataclasses import asdict, fields

import pytest

from bench.carbon.planning.baselines import BASELINES
from bench.carbon.planning.pillars import ABLATION, PILLARS, Levers, Pillars


def test_no_pillar_leaves_every_lever_off_and_all_turn_every_lever_on():
    assert Pillars.none().levers() == Levers()
    assert all(asdict(Pillars().levers()).values())
    assert {p.lever for p in PILLARS} == {f.name for f in fields(Levers)}  # one lever each, none shared


@pytest.mark.parametrize("pillar", PILLARS, ids=lambda p: p.name)
def test_each_pillar_turns_on_its_own_lever_only(pillar):
    levers = Pillars.none().with_on(pillar.name).levers()
    assert {k for k, v in asdict(levers).items() if v} == {pillar.lever}
    assert pillar.changes  # what it changes, for the report


def test_the_ablation_adds_the_pillars_in_their_declared_order_and_baselines_use_rightsize_only():
    assert ABLATION == ("rightsize", "reduce", "reuse", "recycle", "shift")
    assert [b.name for b in BASELINES] == ["performance-optimal", "energy-optimal", "cost-optimal"]
    assert [b.objective for b in BASELINES] == ["performance", "energy", "cost"]
