"""Sweeps give the same rows sequentially and on Ray; the report writes its page and plots."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from owm_adapters.sim.economy.config import EconomyConfig
from owm_adapters.sim.economy.engine import simulate, summary
from owm_adapters.sim.economy.report import FIGURES, write_report
from owm_adapters.sim.economy.sweep import grid, run_sweep
from owm_cli.sim import sim
from owm_core.errors import InvalidValue

BASE = EconomyConfig(nodes=60, days=12)


def test_a_grid_holds_every_combination_once_per_seed_in_a_fixed_order():
    configs = grid(BASE, {"redundancy": [1, 3], "lazy_share": [0.0, 0.1]}, [0, 1])
    assert len(configs) == 8
    assert [(c.redundancy, c.lazy_share, c.seed) for c in configs[:3]] == [
        (1, 0.0, 0), (1, 0.0, 1), (1, 0.1, 0)]
    with pytest.raises(InvalidValue):
        grid(BASE, {"no_such_setting": [1]}, [0])


def test_a_run_that_breaks_an_invariant_is_a_row_with_its_reproduction_not_a_crash():
    rows = run_sweep(grid(BASE, {"colluder_share": [0.0, 0.4]}, [0]))
    assert "violation" not in rows[0]
    assert rows[1]["violation"]["invariant"] == "no-honest-slashed"
    assert rows[1]["violation"]["reproduction"].startswith("owm sim economy ")


@pytest.mark.slow
def test_a_sweep_on_a_local_ray_gives_the_same_rows_as_a_sequential_one():
    pytest.importorskip("ray")
    configs = grid(BASE, {"redundancy": [1, 3], "colluder_share": [0.0, 0.4]}, [0])
    assert run_sweep(configs, use_ray=True) == run_sweep(configs)


def test_the_report_writes_a_page_with_the_summary_table_and_every_plot(tmp_path):
    pytest.importorskip("matplotlib")
    world = simulate(BASE)
    page = write_report(world, summary(world, 1.0), tmp_path / "report")
    text = page.read_text()
    assert "| tasks settled |" in text and "| honest |" in text
    for name in FIGURES:
        image = tmp_path / "report" / name
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in text


def test_the_sweep_command_prints_one_json_row_per_run():
    result = CliRunner().invoke(sim, ["sweep", "--nodes", "40", "--days", "5", "--vary",
                                      "redundancy=1,3", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["config"]["redundancy"] for r in rows] == [1, 3]
    assert "run 2/2" in result.stderr


def test_an_unknown_setting_to_vary_is_a_one_line_error():
    result = CliRunner().invoke(sim, ["sweep", "--vary", "speed=1,2"])
    assert result.exit_code == 2
    assert "give SETTING=V1,V2" in result.output


def test_the_economy_command_writes_its_report_where_asked(tmp_path):
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(sim, ["economy", "--nodes", "40", "--days", "5", "--report",
                                      str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.md").exists()
    assert "report: " in result.stdout
