"""Spend control (issue 12, item 6): --limit and --sample to try a few documents first, --max-cost before
and during a run, and the live spend and failures in the progress output.

The CLI runs in-process against the loopback reference server (fixtures from ``test_faults.py``).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest
import test_faults as faults
from test_faults import Out, run_cli, strict_jsonl
from test_nothing_lost import assert_each_document_once
from test_resume import count_reads

import insights
from insights import cli
from insights.estimate import Estimator
from insights.testing.server import FaultPlan

srv, cli_env, seed_dir, seeds = faults.srv, faults.cli_env, faults.seed_dir, faults.seeds


def estimates(documents: list[insights.Document]) -> dict[str, float]:
    """What the cap reckons each document costs before it starts (the CLI's default model and prices)."""
    estimator = Estimator(insights.resolve_settings(env={}, no_cache=True))
    return {d.id: estimator.add(d) or 0.0 for d in documents}


def costs(out: Out) -> dict[str, float]:
    return {x["document_id"]: x["provenance"]["usage"]["cost_usd"] or 0.0 for x in strict_jsonl(out.documents)}


# ====================================================================================== --max-cost
def test_an_estimate_above_the_cap_is_refused_before_any_request(srv, cli_env, seed_dir, seeds, tmp_path, capsys):
    out = Out(tmp_path / "out.jsonl")
    total = sum(estimates(seeds).values())
    assert run_cli(seed_dir, "-o", out.out, "--max-cost", f"{total * 0.9:.6f}") == cli.EXIT_BUDGET
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("not started:")]
    assert f"estimate for the 5 document(s) to do is ${total:.6f}" in line and "above --max-cost" in line
    assert "Raise --max-cost" in line and "--limit N" in line and "Nothing was sent" in line
    assert srv.count == 0 and out.ledger_ids() == []
    # Just enough: it runs, and a finished run is never refused (nothing left to estimate).
    assert run_cli(seed_dir, "-o", out.out, "--max-cost", f"{total * 1.01:.6f}") == 0
    assert run_cli(seed_dir, "-o", out.out, "--max-cost", "0") == 0 and srv.count == 5


def test_a_model_without_a_price_cannot_be_capped(srv, cli_env, seed_dir, tmp_path, capsys):
    out = Out(tmp_path / "out.jsonl")
    assert run_cli(seed_dir, "-o", out.out, "--model", "local-llama", "--max-cost", "1") == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--max-cost needs the price of model 'local-llama'" in err and "--prices FILE" in err
    assert srv.count == 0 and not out.out.exists()
    prices = tmp_path / "prices.json"
    prices.write_text('{"local-llama": {"input": 0, "output": 0}}')
    assert run_cli(seed_dir, "-o", out.out, "--model", "local-llama", "--max-cost", "0", "--prices", prices) == 0


def test_the_run_stops_starting_documents_once_the_spend_would_pass_the_cap(
    srv, cli_env, seed_dir, seeds, tmp_path, capsys
):
    """Every document is re-asked twice (a hallucinated quote), so it costs about three times its
    estimate: the estimate passes the cap, the live spend does not."""
    srv.plan = FaultPlan(script={"*": ["hallucinate", "hallucinate"]})
    expected = estimates(seeds)
    given = f"{sum(expected.values()) + 1e-6:.6f}"
    cap = float(given)
    out = Out(tmp_path / "out.jsonl")

    code = run_cli(seed_dir, "-o", out.out, "--concurrency", 1, "--max-cost", given)

    assert code == cli.EXIT_BUDGET
    spent = costs(out)
    order = [d.id for d in seeds]
    started = order[: len(spent)]
    assert list(spent) == started and 1 <= len(started) < 5  # in input order, one at a time
    # Each document started only while the spend so far plus its own estimate stayed within the cap...
    for i, doc_id in enumerate(started):
        assert sum(spent[d] for d in started[:i]) + expected[doc_id] <= cap
    # ...and the next one would have passed it.
    assert sum(spent.values()) + expected[order[len(started)]] > cap
    err = capsys.readouterr().err
    assert f"done {len(started)}, failed 0" in err and "past --max-cost" in err and "higher --max-cost" in err
    assert_each_document_once(out, started)

    srv.plan = FaultPlan()
    assert run_cli(seed_dir, "-o", out.out, "--max-cost", given) == 0
    assert_each_document_once(out, order)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "ten"])
def test_max_cost_must_be_a_number_of_dollars(value: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["extract", str(tmp_path), "--max-cost", value])
    assert done.value.code == cli.EXIT_USAGE and "--max-cost" in capsys.readouterr().err


# ================================================================================ --limit, --sample
def test_limit_does_the_first_pending_documents_and_reads_no_further(
    srv, cli_env, seed_dir, seeds, tmp_path, monkeypatch, capsys
):
    out = Out(tmp_path / "out.jsonl")
    order = [d.id for d in seeds]
    reads = count_reads(monkeypatch)
    assert run_cli(seed_dir, "-o", out.out, "--limit", 2) == 0
    assert sorted(out.ledger_ids()) == order[:2] and reads == [f"{i}.txt" for i in order[:2]]
    assert run_cli(seed_dir, "-o", out.out, "--limit", 2) == 0
    assert sorted(out.ledger_ids()) == order[:4] and "skipped 2 (already in the output)" in capsys.readouterr().err
    assert run_cli(seed_dir, "-o", out.out, "--limit", 2) == 0
    assert_each_document_once(out, order)
    assert Counter(r["doc_id"] for r in srv.requests) == Counter(order)


def test_sample_does_a_seeded_random_choice_of_pending_documents(srv, cli_env, seed_dir, seeds, tmp_path):
    out = Out(tmp_path / "out.jsonl")
    order = [d.id for d in seeds]
    assert run_cli(seed_dir, "-o", out.out, "--sample", 2, "--seed", 3) == 0
    chosen = set(random.Random(3).sample(order, 2))
    assert set(out.ledger_ids()) == chosen
    rest = [i for i in order if i not in chosen]
    assert run_cli(seed_dir, "-o", out.out, "--sample", 2, "--seed", 3) == 0  # drawn from what is left
    again = set(random.Random(3).sample(rest, 2))
    assert set(out.ledger_ids()[2:]) == again
    assert sorted(r["doc_id"] for r in srv.requests) == sorted(chosen | again)


def test_limit_and_sample_exclude_each_other(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["extract", str(tmp_path), "--limit", "2", "--sample", "2"])
    assert done.value.code == cli.EXIT_USAGE and "not allowed with" in capsys.readouterr().err


def test_limit_with_max_cost_estimates_only_the_documents_it_will_do(srv, cli_env, seed_dir, seeds, tmp_path, capsys):
    out = Out(tmp_path / "out.jsonl")
    expected = estimates(seeds)
    two = expected[seeds[0].id] + expected[seeds[1].id]
    assert run_cli(seed_dir, "-o", out.out, "--limit", 2, "--max-cost", f"{two * 1.001:.6f}") == 0
    assert sorted(out.ledger_ids()) == [d.id for d in seeds[:2]]
    assert run_cli(seed_dir, "-o", out.out, "--limit", 3, "--max-cost", f"{two * 1.001:.6f}") == cli.EXIT_BUDGET
    assert "estimate for the 3 document(s) to do" in capsys.readouterr().err and srv.count == 2


# ============================================================================== live spend, failures
def test_progress_lines_show_the_spend_and_the_failures_so_far(srv, cli_env, seed_dir, seeds, tmp_path, capsys):
    failing = seeds[2].id
    srv.plan = FaultPlan(script={failing: ["400"] * 10})
    out = Out(tmp_path / "out.jsonl")
    assert cli.main(["extract", str(seed_dir), "-o", str(out.out), "--concurrency", "1"]) == cli.EXIT_FAILED
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[")]
    assert [x.split("]")[0] for x in lines] == [f"[{n}/5" for n in range(1, 6)]
    spent = 0.0
    ledger = costs(out)
    for line, doc in zip(lines, seeds, strict=True):
        spent += ledger.get(doc.id, 0.0)
        failed = int(doc.id == failing or any(d.id == failing for d in seeds[: seeds.index(doc)]))
        assert line.endswith(f" | ${spent:.4f} spent, {failed} failed"), line
        assert (f"{doc.id}: FAILED" in line) == (doc.id == failing)
    assert re.search(r"\$0\.\d{4} spent, 1 failed$", lines[-1])


def test_a_failed_document_counts_what_its_error_says_it_spent_else_its_estimate() -> None:
    from types import SimpleNamespace

    from insights.batch import Outcome
    from insights.spend import SpendCap

    text = "# R{0}\n\nThe lab ran pilot {0} with the city."
    docs = [insights.parse_document(text.format(i), doc_id=f"r{i}") for i in range(3)]
    cap = SpendCap(1.0, insights.resolve_settings(env={}, no_cache=True))
    assert [d.id for d in cap.gate(docs[:2])] == ["r0", "r1"]
    paid = insights.TransportError("HTTP 500", attempts=5)
    paid.usage = SimpleNamespace(cost_usd=0.25)  # type: ignore[attr-defined]  # as the client records it
    cap.finished(Outcome(docs[0], error=paid))
    assert cap.spent == 0.25
    cap.finished(Outcome(docs[1], error=insights.TransportError("reset", attempts=5)))
    assert cap.spent == pytest.approx(0.25 + estimates(docs)["r1"])  # unknown: its estimate, to be safe
    cap.spent = 0.999999
    assert not cap.admit(docs[2]) and cap.stopped and not cap.admit(docs[2])
