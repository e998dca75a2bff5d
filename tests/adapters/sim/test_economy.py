"""The economy simulator: real rules, invariants after every day, reproducible runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from owm_adapters.sim.economy.config import EconomyConfig
from owm_adapters.sim.economy.engine import run_economy, simulate
from owm_adapters.sim.economy.invariants import InvariantViolated
from owm_cli.sim import sim

SMALL = EconomyConfig(nodes=120, days=30, seed=3, pool_start_day=10, grant_every_days=10)


def test_a_small_world_with_every_adversary_keeps_every_invariant_for_a_month():
    world = simulate(SMALL)
    assert world.day == 30
    assert world.market.counts["tasks"] > 500
    assert world.registry.refused_registrations > 0  # Sybil identities share one channel
    assert {s.behaviour for s in world.slashes} <= {"lazy", "poisoner", "colluder"}
    assert world.slashes, "lazy nodes lose majority votes and are slashed"


def test_the_same_seed_gives_the_same_figures_and_another_seed_different_ones():
    first, again = run_economy(SMALL), run_economy(SMALL)
    for report in (first, again):
        report.pop("seconds"), report.pop("node_days_per_s")
    assert first == again
    other = run_economy(EconomyConfig(nodes=120, days=30, seed=4))
    assert other["money_msat"] != first["money_msat"]


def test_lazy_nodes_earn_less_than_honest_ones_and_free_riders_get_no_work_done():
    report = run_economy(EconomyConfig(nodes=200, days=30, seed=1, lazy_share=0.1,
                                       free_rider_share=0.5))
    by = report["earnings"]["by_behaviour"]
    assert by["lazy"]["mean_sat"] < by["honest"]["mean_sat"] / 5
    assert report["tasks"]["refused_unfunded"] > 0


def test_a_colluding_majority_framing_an_honest_node_stops_the_run_with_a_reproduction():
    config = EconomyConfig(nodes=100, days=20, colluder_share=0.4)
    with pytest.raises(InvariantViolated) as raised:
        simulate(config)
    violation = raised.value.violation
    assert violation.invariant == "no-honest-slashed"
    assert violation.actors[0].startswith("n")
    assert raised.value.reproduction is not None
    assert "--colluder-share 0.4" in raised.value.reproduction
    assert f"--days {violation.day + 1}" in raised.value.reproduction


def test_the_command_prints_json_on_stdout_and_progress_on_stderr():
    result = CliRunner().invoke(sim, ["economy", "--nodes", "60", "--days", "5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["config"]["nodes"] == 60
    assert "day 5/5" in result.stderr


def test_a_broken_invariant_is_a_one_line_error_naming_the_reproduction():
    result = CliRunner().invoke(sim, ["economy", "--nodes", "100", "--days", "10",
                                      "--colluder-share", "0.4"])
    assert result.exit_code != 0
    assert "invariant no-honest-slashed broken on day" in result.stderr
    assert "reproduce with: owm sim economy" in result.stderr


def test_shares_of_node_behaviours_above_one_are_refused():
    result = CliRunner().invoke(sim, ["economy", "--lazy-share", "0.7", "--flaky-share", "0.7"])
    assert result.exit_code != 0
    assert "shares" in result.output
