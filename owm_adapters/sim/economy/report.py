"""The report of a run: a Markdown page with the summary table and PNG plots (matplotlib).

``write_report(world, summary, directory)`` writes ``report.md`` and five figures: earnings
by tier and by behaviour (box plots of each node's earnings), the treasury balance over time,
slashing events per day by behaviour, the Lorenz curve of earnings with its Gini coefficient,
and the stake payback time per tier. matplotlib is the ``[sim]`` extra; it is imported here
only, with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from owm_adapters.sim.economy.world import World
from owm_core.errors import InvalidValue

FIGURES = ("earnings_by_tier.png", "earnings_by_behaviour.png", "treasury.png",
           "slashing.png", "gini.png", "payback.png")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InvalidValue("report", "needs matplotlib: pip install 'owm-network[sim]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _boxes(plt: Any, groups: dict[str, list[float]], title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    names = sorted(groups)
    axes.boxplot([groups[n] for n in names], showmeans=True)
    axes.set_xticks(range(1, len(names) + 1), names)
    axes.set_ylabel("earned over the run (sat)")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _line(plt: Any, values: list[float], title: str, ylabel: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(range(len(values)), values)
    axes.set_xlabel("day")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _slashing(plt: Any, world: World, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    behaviours = sorted({s.behaviour for s in world.slashes})
    for behaviour in behaviours:
        days = [s.day for s in world.slashes if s.behaviour == behaviour]
        axes.hist(days, bins=max(1, min(50, world.day)), range=(0, max(1, world.day)),
                  histtype="step", label=behaviour)
    axes.set_xlabel("day")
    axes.set_ylabel("slashings")
    axes.set_title(f"slashing events ({len(world.slashes)})")
    if behaviours:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _lorenz(plt: Any, world: World, gini: float, path: Path) -> None:
    earned = sorted(a.earned_msat for a in world.agents)
    total = sum(earned) or 1
    shares, running = [0.0], 0
    for value in earned:
        running += value
        shares.append(running / total)
    xs = [i / len(earned) for i in range(len(earned) + 1)]
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot(xs, shares, label="earnings")
    axes.plot([0, 1], [0, 1], linestyle="--", label="equality")
    axes.set_xlabel("share of nodes (poorest first)")
    axes.set_ylabel("share of earnings")
    axes.set_title(f"Lorenz curve, Gini {gini:.3f}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _payback(plt: Any, payback: dict[str, float | None], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    tiers = sorted(payback)
    axes.bar(range(len(tiers)), [payback[t] or 0 for t in tiers])
    axes.set_xticks(range(len(tiers)), tiers)
    axes.set_ylabel("days to earn the stake minimum back")
    axes.set_title("stake payback time of an honest node")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _table(summary: dict[str, Any]) -> list[str]:
    money = summary["money_msat"]
    rows = [
        ("nodes × days", f"{summary['config']['nodes']} × {summary['config']['days']}"),
        ("seed", summary["config"]["seed"]),
        ("tasks settled", summary["tasks"].get("tasks", 0)),
        ("tasks refused: unfunded / no match",
         f"{summary['tasks'].get('refused_unfunded', 0)} / "
         f"{summary['tasks'].get('refused_no_match', 0)}"),
        ("registrations (refused)",
         f"{summary['registrations']} ({summary['refused_registrations']})"),
        ("slashings by behaviour", summary["slashed_by_behaviour"]),
        ("FL rounds (flagged updates)", f"{summary['fl_rounds']} ({summary['fl_flagged']})"),
        ("pool blocks found", summary["pool_blocks"]),
        ("grants executed / rejected",
         f"{summary['grants_executed']} / {summary['grants_rejected']}"),
        ("paid to nodes (sat)", money["paid_to_nodes"] // 1000),
        ("treasury at the end (sat)", money["treasury_end"] // 1000),
        ("treasury at its lowest (sat)", money["treasury_min"] // 1000),
        ("FPPS balances still owed (sat)", money["pool_owed"] // 1000),
        ("Gini of earnings", summary["earnings"]["gini"]),
        ("stake payback (days)", summary["stake_payback_days"]),
    ]
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "| behaviour | nodes | mean sat | median sat | max sat |",
              "|---|---|---|---|---|"]
    for behaviour, stats in summary["earnings"]["by_behaviour"].items():
        lines.append(f"| {behaviour} | {stats['nodes']} | {stats['mean_sat']} | "
                     f"{stats['median_sat']} | {stats['max_sat']} |")
    return lines


def write_report(world: World, summary: dict[str, Any], directory: str | Path) -> Path:
    """Write ``report.md`` and its figures into ``directory`` (created); return the page."""
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    by_tier: dict[str, list[float]] = {}
    by_behaviour: dict[str, list[float]] = {}
    for agent in world.agents:
        by_tier.setdefault(agent.tier.value, []).append(agent.earned_msat / 1000)
        by_behaviour.setdefault(agent.behaviour.value, []).append(agent.earned_msat / 1000)
    _boxes(plt, by_tier, "earnings by tier", out / FIGURES[0])
    _boxes(plt, by_behaviour, "earnings by behaviour", out / FIGURES[1])
    _line(plt, [v / 1e3 for v in world.series.get("treasury_msat", [])],
          "treasury balance", "sat", out / FIGURES[2])
    _slashing(plt, world, out / FIGURES[3])
    _lorenz(plt, world, summary["earnings"]["gini"], out / FIGURES[4])
    _payback(plt, summary["stake_payback_days"], out / FIGURES[5])
    page = out / "report.md"
    titles = ("Earnings by tier", "Earnings by behaviour", "Treasury over time",
              "Slashing events", "Gini coefficient of earnings", "Stake payback time")
    lines = [f"# Economy simulation: {summary['config']['nodes']} nodes, "
             f"{summary['config']['days']} days, seed {summary['config']['seed']}", "",
             *_table(summary), ""]
    for title, name in zip(titles, FIGURES, strict=True):
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    page.write_text("\n".join(lines), encoding="utf-8")
    return page
