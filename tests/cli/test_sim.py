"""``owm sim fl``: FedAvg collapses under attack, the robust rules hold (fixed seeds)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from click.testing import CliRunner

from owm_cli.sim import sim


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def final_accuracy(*args: str) -> tuple[float, str]:
    result = CliRunner().invoke(sim, ["fl", *args])
    assert result.exit_code == 0, result.output
    match = re.search(r"final accuracy ([0-9.]+)", result.output)
    assert match, result.output
    return float(match.group(1)), result.output


ATTACKED = [
    "--clients",
    "100",
    "--byzantine",
    "20",
    "--attack",
    "signflip",
    "--rounds",
    "3",
    "--seed",
    "1",
]


def test_fedavg_collapses_under_a_sign_flip_attack_while_robust_rules_keep_learning():
    fedavg, _ = final_accuracy(*ATTACKED, "--rule", "fedavg")
    assert fedavg < 0.2
    for rule in ["krum", "multikrum", "trimmed", "median"]:
        robust, output = final_accuracy(*ATTACKED, "--rule", rule)
        assert robust > 0.6, output
        assert robust > fedavg + 0.4


def test_the_command_prints_accuracy_for_every_round_and_counts_signals():
    _, output = final_accuracy(
        "--clients",
        "12",
        "--byzantine",
        "2",
        "--attack",
        "gaussian",
        "--rule",
        "median",
        "--rounds",
        "2",
    )
    assert [int(r) for r in re.findall(r"round (\d+): accuracy", output)] == [0, 1, 2]
    assert "slashing signals 4" in output


def test_too_many_byzantine_clients_for_the_rule_is_a_one_line_error():
    result = CliRunner().invoke(
        sim, ["fl", "--clients", "10", "--byzantine", "4", "--rule", "krum", "--rounds", "1"]
    )
    assert result.exit_code == 2
    assert "krum needs 11 participants to tolerate f=4" in result.output


def test_fl_with_json_prints_the_same_figures_as_the_text_and_progress_only_on_stderr():
    args = ["fl", "--clients", "10", "--byzantine", "2", "--rounds", "1", "--seed", "3"]
    text = CliRunner().invoke(sim, args)
    as_json = CliRunner().invoke(sim, [*args, "--json"])
    assert text.exit_code == 0 and as_json.exit_code == 0, (text.output, as_json.output)
    report = json.loads(as_json.stdout)
    assert "rounds" in as_json.stderr  # the progress bar
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert f"final accuracy {report['final_accuracy']:.4f}" in text.stdout
    for r in report["rounds"]:
        assert f"round {r['round']}: accuracy {r['accuracy']:.4f}" in text.stdout
    assert (report["clients"], report["byzantine"], report["rule"]) == (10, 2, "krum")
    assert f"slashing signals {report['slashing_signals']}" in text.stdout


def test_fl_trains_a_sub_models_reader_adapter_with_the_model_option(monkeypatch):
    from owm_adapters.models import reader_rounds

    # Few pairs a client and few held-out pairs: the same path, a fraction of the CPU.
    monkeypatch.setattr(reader_rounds, "PAIRS_PER_ROUND", 4)
    monkeypatch.setattr(reader_rounds, "HOLDOUT_PAIRS", 4)
    args = ["fl", "--model", "minilm-lora", "--clients", "5", "--byzantine", "1",
            "--attack", "signflip", "--rule", "median", "--rounds", "1", "--json"]
    result = CliRunner().invoke(sim, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "minilm-lora" and [r["round"] for r in report["rounds"]] == [0, 1]
    assert "loading the MiniLM encoder and owm-geo's training pairs from " in result.stderr
    assert report["slashing_signals"] == 1  # the sign-flipped adapter update is flagged
    assert 0.0 <= report["final_accuracy"] <= 1.0


def test_fl_with_a_model_but_no_dataset_for_the_sub_model_is_a_one_line_error():
    result = CliRunner().invoke(sim, ["fl", "--model", "minilm-lora", "--sub-model", "owm-nope",
                                      "--clients", "3", "--byzantine", "0", "--rounds", "1"])
    assert result.exit_code == 2
    assert "no shipped dataset for owm-nope" in result.output
