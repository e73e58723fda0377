"""Dataset loaders (on the shared files) and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from loopwise import datasets
from loopwise.cli import app


@pytest.fixture(scope="module")
def have_shared():
    if not (datasets.data_dir() / "letter.csv").is_file():
        pytest.skip(f"shared datasets not at {datasets.data_dir()}")


def test_letter_reads_through_the_bom(have_shared):
    d = datasets.load("letter")
    assert d.X.shape == (20_000, 16) and d.X.dtype == np.float32
    assert d.n_classes == 26 and set(d.y) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_adult_categoricals_are_one_hot(have_shared):
    d = datasets.load("adult")
    assert d.X.dtype == np.float32 and d.X.shape[0] == 30_162 and d.X.shape[1] > 14
    assert set(np.unique(d.y)) == {"<=50K", ">50K"}
    assert np.isin(d.X[:, 6:], [0.0, 1.0]).mean() > 0.9  # mostly indicator columns


def test_trec_texts_and_text_model(have_shared):
    d = datasets.load("trec")
    assert d.kind == "text" and d.n_classes == 6 and isinstance(d.X[0], str)
    d.model.fit(d.X[:300], d.y[:300])
    assert d.model.predict_proba(d.X[:3]).shape == (3, len(np.unique(d.y[:300])))


def test_missing_file_and_unknown_name_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/letter.csv not found"):
        datasets.load("letter")
    with pytest.raises(ValueError, match="known datasets: digits, letter"):
        datasets.load("mnist")


def test_cli_lists_strategies_and_marks_the_default():
    out = CliRunner().invoke(app, ["strategies"])
    assert out.exit_code == 0
    default = next(line for line in out.output.splitlines() if line.endswith("(default)"))
    assert default.split()[0] == "diverse_margin" and "near-copies" in default
    assert len(out.output.strip().splitlines()) == len(
        __import__("loopwise.strategies").strategies.names()
    )


def test_cli_simulate_prints_the_curve_and_writes_its_files(tmp_path):
    args = ["simulate", "--dataset", "digits", "--seeds", "1", "--budget", "60", "--jobs", "1"]
    out = CliRunner().invoke(app, [*args, "-s", "margin", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "Learning curve" in out.output and "margin" in out.output and "random" in out.output
    assert (tmp_path / "learning_curve_digits.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "summary_digits.json").read_text())
    assert {r["arm"] for r in summary["summary"]} == {"random", "margin"}


def test_cli_refuses_an_unknown_strategy(tmp_path):
    out = CliRunner().invoke(app, ["simulate", "-s", "magic", "--out", str(tmp_path)])
    assert out.exit_code != 0 and "unknown strategy 'magic'" in out.output


def test_the_loopwise_command_is_one_app_with_every_command():
    import typer

    from flows.cli import app as loopwise

    group = typer.main.get_command(loopwise)
    assert set(group.commands) == {
        "init",
        "run",
        "deploy",
        "status",
        "report",
        "doctor",
        "annotate",
        "strategies",
        "simulate",
        "annotators",
        "serve",
        "stream",
        "retrain",
        "deploy-stream",
    }
    assert set(group.commands["annotators"].commands) == {"simulate"}
    assert set(typer.main.get_command(app).commands) == {"strategies", "simulate"}
    out = CliRunner().invoke(loopwise, ["strategies"])
    assert out.exit_code == 0 and "(default)" in out.output


def test_the_library_cli_reaches_no_server_code():
    import ast
    from pathlib import Path

    import loopwise.cli

    tree = ast.parse(Path(loopwise.cli.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m.split(".")[0] for m in imported} <= {
        "__future__",
        "json",
        "pathlib",
        "typing",
        "numpy",
        "typer",
        "pandas",
        "loopwise",
    }


def test_commands_use_the_configured_prefect_api_else_the_one_local_server(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from devstack import prefect_server
    from flows.cli._prefect import prefect_api

    calls = []

    def local_server() -> prefect_server.PrefectServer:
        calls.append("ensure")
        return prefect_server.PrefectServer("http://127.0.0.1:4999", pid=None, started=False)

    monkeypatch.setattr(prefect_server, "ensure", local_server)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4888/api"}):
        with prefect_api() as api:
            assert api == PREFECT_API_URL.value() == "http://127.0.0.1:4888/api"
    assert calls == []  # a configured server is used as it is
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with prefect_api() as api:
            assert api == PREFECT_API_URL.value() == "http://127.0.0.1:4999/api"
        assert PREFECT_API_URL.value() is None  # only inside the command
    assert calls == ["ensure"]


def test_text_sets_load_as_texts_with_their_labels(have_shared):
    sst2, ag = datasets.load("sst2"), datasets.load("agnews")
    assert sst2.kind == ag.kind == "text" and isinstance(sst2.X[0], str)
    assert set(np.unique(sst2.y)) == {0, 1} and len(sst2.y) > 60_000
    assert ag.n_classes == 4 and len(ag.y) == 7_600


def test_synthetic_regimes_are_reproducible_and_have_the_shares_they_claim():
    r = datasets.REGIMES["syn-imbalance-1to20"]
    a, b = datasets.load("syn-imbalance-1to20"), datasets.load("syn-imbalance-1to20")
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    counts = np.bincount(a.y)
    assert counts.max() / counts.min() > 10  # strongly imbalanced (noise blurs the exact 20)
    assert r.shares()[0] / r.shares()[-1] == pytest.approx(20.0)
    assert datasets.load("syn-26-classes").n_classes == 26
    assert datasets.load("syn-2-classes").n_classes == 2


def test_cli_simulate_names_the_known_datasets_for_an_unknown_one():
    out = CliRunner().invoke(app, ["simulate", "--dataset", "mnist"])
    assert out.exit_code == 2
    assert "unknown dataset 'mnist'" in out.output and "syn-noise-10pct" in out.output
