"""The command line on a campaign file it cannot use: refused before any work, file and key named."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app

COMMANDS = ["status", "report", "run", "deploy"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_campaign_file_exits_2_naming_the_file_and_the_key(tmp_path, command):
    path = tmp_path / "campaign.yaml"
    raw = {"name": "t", "data": {"source": "pool.csv"}, "labels": ["a", "b"], "batch_sise": 10}
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, [command, str(path)])
    assert res.exit_code == 2, res.output
    assert str(path) in res.output and "batch_sise" in res.output, res.output
    assert "Traceback" not in res.output, res.output
    assert sorted(tmp_path.iterdir()) == [path]  # refused before anything was written


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_campaign_file_exits_2_naming_it(tmp_path, command):
    path = tmp_path / "nope.yaml"
    res = CliRunner().invoke(app, [command, str(path)])
    assert res.exit_code == 2, res.output
    assert str(path) in res.output and "not found" in res.output, res.output


def test_status_of_a_truncated_state_file_names_it_without_a_traceback(tmp_path):
    path = tmp_path / "campaign.yaml"
    raw = {
        "name": "t",
        "data": {"source": "pool.csv"},
        "labels": ["a", "b"],
        "storage_root": str(tmp_path / "store"),
    }
    path.write_text(yaml.safe_dump(raw))
    state = tmp_path / "store" / "t" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"cycle": 3, "stage": "wai')  # cut short by a full disk, say
    res = CliRunner().invoke(app, ["status", str(path)])
    assert res.exit_code == 1, res.output
    assert str(state) in res.output and "not valid JSON" in res.output, res.output
    assert "Traceback" not in res.output, res.output
    assert isinstance(res.exception, SystemExit), "a clean exit, not an uncaught error"
    assert state.read_text() == '{"cycle": 3, "stage": "wai', "nothing was changed"
