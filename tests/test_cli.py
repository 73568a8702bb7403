"""The command line: help, exit codes, messages, replay, schema, estimate, cache commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CASSETTES, REPO, SEEDS

from insights import cli
from insights.output import read_jsonl
from insights.testing.server import ReferenceServer

REPLAY = CASSETTES / "seeds-replay.jsonl"


@pytest.mark.parametrize(
    "argv",
    [[], ["extract"], ["estimate"], ["evaluate"], ["schema"], ["cache"], ["cache", "stats"], ["cache", "export"]],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    assert "usage: insights" in capsys.readouterr().out


def test_extract_help_explains_resume_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["extract", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--output",
        "--concurrency",
        "--offline",
        "--replay",
        "--base-url",
        "--model",
        "--no-cache",
        "--overwrite",
    ):
        assert option in text
    assert "skips documents already in the output" in " ".join(text.split())


def test_no_key_and_no_endpoint_is_a_clear_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["extract", str(SEEDS), "-o", str(tmp_path / "o.jsonl")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and "--offline" in err
    assert not (tmp_path / "o.errors.jsonl").exists() or (tmp_path / "o.errors.jsonl").read_text() == ""


def test_missing_input_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["extract", str(tmp_path / "nope"), "--offline"]) == cli.EXIT_USAGE
    assert "nope" in capsys.readouterr().err


def test_replay_runs_the_seeds_offline_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert cli.main(["extract", str(SEEDS), "-o", str(out), "--replay", str(REPLAY), "-q"]) == 0
    err = capsys.readouterr().err
    assert "Replaying recorded responses" in err and "not a live model" in err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 61 and {x["document_id"] for x in lines} == {p.stem for p in SEEDS.iterdir()}
    texts = {p.stem: __import__("insights").load_document(p).text for p in SEEDS.iterdir()}
    for line in lines:
        for e in line["evidence"]:
            assert texts[line["document_id"]][e["start"] : e["end"]] == e["quote"]
    assert {x["kind"] for x in lines} == {"barrier", "enabler", "champion", "failed_experiment"}
    assert [d["counts"]["rejected"] for d in read_jsonl(tmp_path / "out.documents.jsonl")] == [0] * 5


def test_offline_with_an_empty_cache_reports_every_document_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    code = cli.main(["extract", str(SEEDS), "-o", str(out), "--offline", "--cache", str(tmp_path / "empty.db"), "-q"])
    assert code == cli.EXIT_FAILED
    errors = list(read_jsonl(tmp_path / "out.errors.jsonl"))
    assert len(errors) == 5 and {e["error_type"] for e in errors} == {"CacheMiss"}
    assert all("has no answer for this request" in e["message"] and e["retryable"] for e in errors)
    assert out.read_text() == ""


def test_estimate_counts_without_network(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["estimate", str(SEEDS), "--model", "gpt-4o-mini"]) == 0
    out = capsys.readouterr().out
    assert "documents                 5" in out and "calls (no re-asks)        5" in out
    assert "estimated cost            $0.0" in out and "no network" in out


def test_cache_export_import_stats_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "c.db")
    body = "".join(REPLAY.read_text().splitlines(keepends=True)[1:])
    (tmp_path / "entries.jsonl").write_text(body)
    assert cli.main(["cache", "import", str(tmp_path / "entries.jsonl"), "--cache", db]) == 0
    assert cli.main(["cache", "stats", "--cache", db]) == 0
    assert "5 entries" in capsys.readouterr().out
    assert cli.main(["cache", "export", str(tmp_path / "again.jsonl"), "--cache", db]) == 0
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 5
    assert cli.main(["cache", "clear", "--cache", db]) == 0
    assert "removed 5 entries" in capsys.readouterr().out


# Ctrl-C in a terminal: a process started in the background by a shell inherits SIGINT ignored (and
# Python then installs no KeyboardInterrupt handler), so the child sets the terminal's default itself.
FOREGROUND = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from insights.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_ctrl_c_exits_at_once_and_the_rerun_completes(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-c", FOREGROUND, "extract", str(SEEDS), "-o", str(out), "--no-cache", "-q"]
    with ReferenceServer({}) as slow:
        slow.hold()  # no request is ever answered: a run that waited for them would never end
        env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_BASE_URL": slow.url}
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert slow.wait_held(5, count=5), "not every document's request arrived"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=300)  # a guard against hanging, far beyond any exit
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert slow.held == 5  # it exited with all five requests unanswered
    assert proc.returncode == cli.EXIT_INTERRUPTED and "run the same command again to resume" in err
    assert out.read_text() == ""
    with ReferenceServer({}) as fast:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_BASE_URL": fast.url}
        assert subprocess.run(argv, env=env, capture_output=True, timeout=300).returncode == 0
    assert len(list(read_jsonl(tmp_path / "out.documents.jsonl"))) == 5
