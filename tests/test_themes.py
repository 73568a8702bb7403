"""Recurring themes (issue 11): deterministic, offline, and claiming nothing the members do not show.

The input is the reference annotations of ``evals/seeds`` and ``evals/corpus`` written as output records
through the library's grounding (:func:`insights.themes_eval.annotated_records`): real insights of real
archive documents, every quote located by the library.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ANNOTATIONS, CASSETTES, RECORDING, REPLAY_KEY, SEEDS, SHARED_CORPUS, FakeClock, replaying

pytest.importorskip("numpy", reason="needs the themes extra: pip install 'grounded-insights[themes]'")
pytest.importorskip("scipy", reason="needs the themes extra: pip install 'grounded-insights[themes]'")
pytest.importorskip("sklearn", reason="needs the themes extra: pip install 'grounded-insights[themes]'")

import insights  # noqa: E402
from insights import cli, vectors  # noqa: E402
from insights.errors import ConfigError  # noqa: E402
from insights.ids import digest_id  # noqa: E402
from insights.output import insight_records  # noqa: E402
from insights.testing.server import INVENTED_ID, FaultPlan, ReferenceServer  # noqa: E402
from insights.theme_labels import TermIndex, ThemeLabel, citable, label_with_model, terms_of  # noqa: E402
from insights.theme_tables import report_data, theme_tables  # noqa: E402
from insights.themes import THEME_RECIPE, Theme, collect, theme_text  # noqa: E402
from insights.themes_eval import DOCUMENTS, annotated_records  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return annotated_records()


@pytest.fixture(scope="module")
def found(records: list[dict[str, Any]]) -> list[Theme]:
    return list(insights.themes(records))


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {d.id: d.text for d in insights.load_corpus([str(p) for p in DOCUMENTS])}


def _tally(values: list[str]) -> list[tuple[str, int]]:
    counts = Counter(v for v in values if v)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def test_the_same_input_gives_the_same_themes_in_any_order(records: list[dict[str, Any]], found: list[Theme]) -> None:
    again = list(insights.themes(list(reversed(records))))
    assert [t.model_dump() for t in again] == [t.model_dump() for t in found]
    assert len(found) >= 20  # the annotated set has recurring themes to find
    assert len({t.theme_id for t in found}) == len(found)


def test_every_member_exists_and_the_counts_match_a_recount(records: list[dict[str, Any]], found: list[Theme]) -> None:
    by_id = {r["insight_id"]: r for r in records}
    seen: set[str] = set()
    for t in found:
        members = [by_id[i] for i in t.insight_ids]  # KeyError: a member that is not in the output
        assert {m["kind"] for m in members} == {t.kind}
        assert t.insight_ids == sorted(t.insight_ids) and not seen & set(t.insight_ids)
        seen |= set(t.insight_ids)
        assert t.n_members == len(members)
        assert t.documents == sorted({m["document_id"] for m in members}) and t.n_documents == len(t.documents)
        assert t.n_documents >= 2  # recurring: never one document only
        assert t.n_countries == len({m["country"] for m in members} - {""})
        assert t.n_years == len({m["year"] for m in members} - {None})
        assert [(c.value, c.count) for c in t.countries] == _tally([m["country"] for m in members])
        assert [(c.value, c.count) for c in t.years] == _tally([str(m["year"]) for m in members if m["year"]])
        assert [(c.value, c.count) for c in t.types] == _tally([m["type"] for m in members])
        assert [(c.value, c.count) for c in t.levels] == _tally([m.get("level", "") for m in members])
        assert [(c.value, c.count) for c in t.categories] == _tally([m.get("category", "") for m in members])
        assert len(t.categories) <= 1  # a theme refines one category
        assert t.min_pair_similarity >= t.min_similarity - 1e-6
        assert t.theme_id == digest_id("thm", [THEME_RECIPE, t.kind, t.insight_ids])


def test_every_representative_quote_indexes_its_document(
    records: list[dict[str, Any]], found: list[Theme], texts: dict[str, str]
) -> None:
    by_id = {r["insight_id"]: r for r in records}
    for t in found:
        reps = t.representatives
        assert 1 <= len(reps) <= 3 and len(reps) == min(3, t.n_members)
        assert len({r.insight_id for r in reps}) == len(reps)
        assert len({r.document_id for r in reps}) == min(len(reps), t.n_documents)  # distinct documents first
        for r in reps:
            member = by_id[r.insight_id]
            assert r.insight_id in t.insight_ids and r.document_id == member["document_id"]
            first = member["evidence"][0]
            assert (r.quote, r.start, r.end, r.section) == (
                first["quote"],
                first["start"],
                first["end"],
                first["section"],
            )
            assert texts[r.document_id][r.start : r.end] == r.quote
            assert r.statement == member["statement"]


def test_labels_are_made_of_terms_the_members_share(records: list[dict[str, Any]], found: list[Theme]) -> None:
    index = TermIndex({})
    by_id = {r["insight_id"]: r for r in records}
    for t in found:
        member_terms = [terms_of(theme_text(by_id[i]), index.stop) for i in t.insight_ids]
        assert t.label_source == "offline" and t.terms
        for term in t.terms:
            assert term.count == sum(term.value in m for m in member_terms)
        shared = [term for term in t.terms if term.count >= 2]
        assert shared or len(t.terms) <= 3  # a label of one member's terms only when none is shared
        assert t.label.casefold() == ", ".join(term.value for term in t.terms).casefold()
        assert t.description.startswith(f"{t.n_members} ") and f"from {t.n_documents} documents" in t.description
        assert t.description.count(".") >= 1 and "\n" not in t.description


def test_groups_from_one_document_are_not_themes() -> None:
    def record(doc: str, n: int, statement: str) -> dict[str, Any]:
        return {
            "document_id": doc, "insight_id": f"ins_{n:020x}", "kind": "barrier", "statement": statement,
            "category": "incentives_and_pay", "level": "organizational", "country": "X", "year": 2022, "type": "blog",
            "evidence": [{"quote": statement, "start": 0, "end": len(statement), "match": "exact", "section": ""}],
        }  # fmt: skip

    pay = "Officials are paid very little and have no incentive to innovate."
    one_document = [record("a", 1, pay), record("a", 2, pay + " Really.")]
    result = insights.themes(one_document)
    assert len(result) == 0 and result.not_recurring == 1 and result.items == 2
    assert len(insights.themes(one_document, min_documents=1)) == 1
    two_documents = [*one_document, record("b", 3, pay)]
    (theme,) = insights.themes(two_documents)
    assert theme.n_members == 3 and theme.n_documents == 2
    assert [r.document_id for r in theme.representatives][:2] in (["a", "b"], ["b", "a"])


def test_tfidf_vectors_work_without_the_packaged_model(records: list[dict[str, Any]]) -> None:
    first = insights.themes(records, vectors="tfidf")
    again = insights.themes(list(reversed(records)), vectors="tfidf")
    assert first.vectors == "tfidf" and len(first) > 0
    assert [t.model_dump() for t in first] == [t.model_dump() for t in again]


def test_bad_arguments_and_a_missing_extra_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="min_similarity"):
        insights.themes([], min_similarity=0)
    with pytest.raises(ConfigError, match="unknown vector method"):
        vectors.embed(["x"], "bert")
    import importlib

    real = importlib.import_module

    def no_scipy(name: str, package: str | None = None) -> Any:
        if name.startswith("scipy"):
            raise ImportError("No module named 'scipy'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_scipy)
    with pytest.raises(
        ConfigError, match=r"needs scipy, which is not installed: pip install 'grounded-insights\[themes\]'"
    ):
        insights.themes(
            [{"document_id": "a", "kind": "barrier", "statement": "s", "evidence": [{"start": 0, "end": 1}]}]
        )


def test_the_packaged_model_loads_with_the_network_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wordllama")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network disabled by the test")

    vectors.wordllama_model.cache_clear()
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    matrix, used = vectors.embed(["Officials are paid too little.", "Salaries are low.", "Data are closed."])
    assert used == "wordllama" and matrix.shape == (3, vectors.WORDLLAMA_DIM)
    sims = matrix @ matrix.T
    assert abs(float(sims[0, 0]) - 1.0) < 1e-5 and float(sims[0, 1]) > float(sims[0, 2])


def test_tables_and_report_data_hold_every_member(records: list[dict[str, Any]], found: list[Theme]) -> None:
    tables = theme_tables(found, records)
    assert [r["theme_id"] for r in tables["themes"]] == [t.theme_id for t in found]
    assert len(tables["theme_members"]) == sum(t.n_members for t in found)
    reps = {(r["theme_id"], r["insight_id"]) for r in tables["theme_members"] if r["representative"]}
    assert reps == {(t.theme_id, r.insight_id) for t in found for r in t.representatives}
    data = report_data(found, records)
    countries = {c.value for t in found for c in t.countries}
    assert set(data["filters"]["country"]) == countries and data["filters"]["year"] == sorted(data["filters"]["year"])
    for theme, shown in zip(found, data["themes"], strict=True):
        assert [m["insight_id"] for m in shown["members"]] == theme.insight_ids
        assert all(m["evidence"] and {"quote", "start", "end"} <= set(m["evidence"][0]) for m in shown["members"])


def test_cli_writes_themes_and_champions_and_is_deterministic(
    tmp_path: Path, records: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli.main(["themes", str(out), "-o", str(tmp_path / "a.jsonl")]) == 0
    assert cli.main(["themes", str(out), "-o", str(tmp_path / "b.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.champions.jsonl").read_bytes() == (tmp_path / "b.champions.jsonl").read_bytes()
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert lines == [t.model_dump(mode="json") for t in insights.themes(records)]
    assert "themes over" in capsys.readouterr().err
    assert cli.main(["themes", str(tmp_path / "missing.jsonl")]) == 2
    with pytest.raises(SystemExit) as help_exit:
        cli.main(["themes", "--help"])
    assert help_exit.value.code == 0 and "--label-with-model" in capsys.readouterr().out


def test_themes_apply_review_decisions_and_raw_ignores_them(
    tmp_path: Path, records: list[dict[str, Any]], found: list[Theme]
) -> None:
    from insights.decisions import DecisionLog, decisions_path, make_decision

    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    member = found[0].insight_ids[0]
    line = next(r for r in records if r["insight_id"] == member)
    with DecisionLog(decisions_path(out)).open() as log:
        log.append(make_decision(line, "reject", "ana"))
    assert cli.main(["themes", str(out), "-o", str(tmp_path / "reviewed.jsonl")]) == 0
    assert cli.main(["themes", str(out), "-o", str(tmp_path / "raw.jsonl"), "--raw"]) == 0

    def members(name: str) -> set[str]:
        rows = [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
        return {m for row in rows for m in row["insight_ids"]}

    assert member in members("raw.jsonl") and member not in members("reviewed.jsonl")


# ------------------------------------------------------------------------------------ model labels
def test_the_label_tool_refuses_ids_that_are_not_members() -> None:
    answer = {"label": "Low pay", "description": "Pay is low.", "cited_ids": ["ins_a"]}
    with citable(["ins_a", "ins_b"]):
        assert ThemeLabel.model_validate(answer).cited_ids == ["ins_a"]
        with pytest.raises(ValueError, match="not: ins_zzz"):
            ThemeLabel.model_validate({**answer, "cited_ids": ["ins_a", "ins_zzz"]})
        with pytest.raises(ValueError):
            ThemeLabel.model_validate({**answer, "cited_ids": []})


def _client(url: str, key: str = REPLAY_KEY, **settings: Any) -> insights.ModelClient:
    options = insights.resolve_settings(env={}, base_url=url, api_key=key, model="gpt-4o-mini", **settings)
    return insights.ModelClient(options, sleep=FakeClock())


def test_model_labels_cite_members_and_fall_back_when_they_do_not(
    records: list[dict[str, Any]], found: list[Theme], tmp_path: Path
) -> None:
    two = found[:2]
    with ReferenceServer(ANNOTATIONS) as server:
        with _client(server.url, cache_path=tmp_path / "c.db") as client:
            labelled = label_with_model(two, records, client)
            assert server.count == 2
            again = label_with_model(two, records, client)  # from the cache: no request
        assert server.count == 2 and again == labelled
        for before, after in zip(two, labelled, strict=True):
            assert after.label_source == "model" and after.label.startswith("Reference label")
            assert after.label_cites and set(after.label_cites) <= set(before.insight_ids)
            assert after.insight_ids == before.insight_ids and after.theme_id == before.theme_id
        server.plan = FaultPlan(script={"*": ["hallucinate", "hallucinate", "hallucinate"]})
        server.reset()
        with _client(server.url, no_cache=True, reasks=2) as client:
            fallback = label_with_model(two[:1], records, client)
        assert server.count == 3  # the first answer and two re-asks, each naming the invented id
        assert INVENTED_ID in json.dumps(server.requests[1]["body"]["messages"])
    (theme,) = fallback
    assert theme.label_source == "offline-fallback" and theme.label == two[0].label
    assert "InvalidOutput" in theme.label_note and INVENTED_ID in theme.label_note


@contextlib.contextmanager
def _label_endpoint() -> Iterator[str]:
    if not RECORDING:
        yield "http://127.0.0.1:9/v1"  # nothing listens: vcr must answer
    else:
        with ReferenceServer(ANNOTATIONS) as server:
            yield server.url


def test_model_label_replays_from_its_cassette(records: list[dict[str, Any]], found: list[Theme]) -> None:
    pytest.importorskip("wordllama", reason="the recorded theme was grouped with wordllama vectors")
    theme = found[0]
    with _label_endpoint() as url, replaying("themes/label.yaml") as cassette:
        (labelled,) = label_with_model([theme], records, _client(url, no_cache=True))
    # A replay miss (stale or missing cassette) surfaces as the fallback's note: re-record with tests/record.py.
    assert labelled.label_source == "model", labelled.label_note
    assert (len(cassette.requests) if RECORDING else cassette.play_count) == 1
    body = json.loads(cassette.requests[0].body)
    assert body["tools"][0]["function"]["name"] == "ThemeLabel"
    assert f"Theme ID: {theme.theme_id}" in body["messages"][1]["content"]
    assert labelled.label_source == "model" and set(labelled.label_cites) <= set(theme.insight_ids)
    assert (CASSETTES / "themes" / "label.yaml").is_file()


def test_records_are_the_annotations_grounded_by_the_library(records: list[dict[str, Any]]) -> None:
    annotated = sum(
        len(json.loads(p.read_text())["extraction"].get(f, []))
        for folder in (ANNOTATIONS, REPO / "evals" / "corpus")
        for p in folder.glob("*.json")
        for f in ("barriers", "enablers", "champions", "failed_experiments")
    )
    assert len(records) == annotated and len(collect(records)) == sum(r["kind"] != "champion" for r in records)
    seeds = {p.stem for p in SEEDS.glob("*.txt")}
    assert seeds <= {r["document_id"] for r in records}


@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="the shared corpus is not beside the repository")
def test_themes_over_the_shared_corpus_run(tmp_path: Path) -> None:
    """The done-criterion run: the corpus extracted through the reference server (annotated documents
    answer from evals/corpus, the rest with synthetic sentences), then themes twice."""
    docs = {d.id: d for d in insights.load_corpus(SHARED_CORPUS)}
    annotations = insights.testing.server.load_annotations(REPO / "evals" / "corpus")
    records: list[dict[str, Any]] = []
    with ReferenceServer(annotations) as server, _client(server.url, no_cache=True) as client:
        for outcome in insights.extract_many(list(docs.values()), concurrency=4, client=client):
            assert outcome.result is not None, outcome.error
            records.extend(insight_records(outcome.document, outcome.result))
    found = insights.themes(records)
    assert [t.model_dump() for t in insights.themes(list(reversed(records)))] == [t.model_dump() for t in found]
    by_id = {r["insight_id"]: r for r in records}
    assert len(found) >= 3 and found.themed + found.not_recurring <= found.items
    for t in found:
        members = [by_id[i] for i in t.insight_ids]
        assert t.n_members == len(members) and t.n_documents == len({m["document_id"] for m in members}) >= 2
        assert t.n_countries == len({m["country"] for m in members} - {""})
        assert t.n_years == len({m["year"] for m in members} - {None})
        for r in t.representatives:
            assert docs[r.document_id].text[r.start : r.end] == r.quote


def test_cli_model_labels_replay_from_an_exported_cache(
    tmp_path: Path, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records[:80]))
    cache, replay = tmp_path / "c.db", tmp_path / "labels-replay.jsonl"
    monkeypatch.setenv("OPENAI_API_KEY", REPLAY_KEY)
    with ReferenceServer(ANNOTATIONS) as server:
        args = ["themes", str(out), "--label-with-model", "--base-url", server.url, "--cache", str(cache)]
        assert cli.main([*args, "-o", str(tmp_path / "live.jsonl")]) == 0
        calls = server.count
        assert calls >= 1
        assert cli.main(["cache", "export", str(replay), "--cache", str(cache)]) == 0
        offline = ["themes", str(out), "--label-with-model", "--base-url", server.url, "--replay", str(replay)]
        assert cli.main([*offline, "-o", str(tmp_path / "replayed.jsonl")]) == 0
        assert server.count == calls  # nothing asked again
    live = (tmp_path / "live.jsonl").read_text()
    assert live == (tmp_path / "replayed.jsonl").read_text()
    assert all(json.loads(x)["label_source"] == "model" for x in live.splitlines())
