"""Themes and champions in the HTML report, without a browser: what the index holds, what the pages count.

The run (:func:`make_themes_run`, shared with ``test_export.py`` and ``test_report_browser.py``): the
loopback reference server answers from the reference annotations (``evals/seeds``, ``evals/corpus``), so
the output holds real annotated insights of ``seeds/`` and ``evals/corpus/documents/`` located by the
library; then the real ``insights themes OUT.jsonl --vectors tfidf`` (deterministic) writes
``OUT.themes.jsonl`` and ``OUT.themes.champions.jsonl`` beside it. Needs the ``themes`` extra.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ANNOTATIONS, REPO, SEEDS

import insights
from insights import cli
from insights.champions import ChampionEntity
from insights.charts import NONE
from insights.errors import OutputError
from insights.evaluate import load_annotations
from insights.output import OutputWriter, read_jsonl
from insights.prompts import load_prompts
from insights.report import build_report, pack_index, render_report, write_report
from insights.report_themes import filter_options
from insights.testing.server import ReferenceServer
from insights.themes import Theme

EVAL_DOCUMENTS = REPO / "evals" / "corpus" / "documents"


def make_themes_run(folder: Path) -> SimpleNamespace:
    """A run with themes in ``folder``: ``out``, ``paths`` (its documents), ``texts``, ``lines``,
    ``themes`` and ``entities`` (as written by ``insights themes``), ``themes_path``, ``champions_path``."""
    for module in ("numpy", "scipy", "sklearn"):
        pytest.importorskip(module, reason="needs the themes extra: pip install 'grounded-insights[themes]'")
    annotations = {**load_annotations(ANNOTATIONS), **load_annotations(REPO / "evals" / "corpus")}
    paths = [SEEDS, EVAL_DOCUMENTS]
    docs = insights.load_corpus(paths)
    out = folder / "run.jsonl"
    with ReferenceServer(annotations) as srv:
        settings = insights.resolve_settings(env={}, base_url=srv.url, api_key="test-not-a-key", no_cache=True)
        with insights.ModelClient(settings) as client, OutputWriter(out) as writer:
            writer.resume(docs, settings.model, load_prompts().version, overwrite=True)
            for outcome in insights.extract_many(docs, concurrency=4, client=client):
                assert outcome.result is not None, outcome.error
                writer.write(outcome.document, outcome.result)
    assert cli.main(["themes", str(out), "--vectors", "tfidf"]) == 0
    themes_path, champions_path = folder / "run.themes.jsonl", folder / "run.themes.champions.jsonl"
    return SimpleNamespace(
        out=out,
        paths=paths,
        texts={d.id: d.text for d in docs},
        lines=list(read_jsonl(out)),
        themes=[Theme.model_validate(x) for x in read_jsonl(themes_path)],
        entities=[ChampionEntity.model_validate(x) for x in read_jsonl(champions_path)],
        themes_path=themes_path,
        champions_path=champions_path,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    return make_themes_run(tmp_path_factory.mktemp("themes-run"))


def unpack(b64: str) -> Any:
    return json.loads(gzip.decompress(base64.b64decode(b64)))


def index_of(run: SimpleNamespace, **options: Any) -> dict[str, Any]:
    index: dict[str, Any] = unpack(pack_index(build_report(run.out, run.paths, **options))[0])
    return index


def _tally(values: list[str]) -> list[tuple[str, int]]:
    counts = Counter(v for v in values if v)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


# ---------------------------------------------------------------------------------------------- index
def test_the_fixture_run_has_themes_and_champions(run: SimpleNamespace) -> None:
    assert len(run.themes) >= 10 and {t.kind for t in run.themes} >= {"barrier", "enabler"}
    assert len(run.entities) >= 10 and any(len(e.aliases) > 1 for e in run.entities)
    assert len({line["country"] for line in run.lines}) >= 5


def test_the_index_holds_every_theme_and_entity_as_member_positions(run: SimpleNamespace) -> None:
    index = index_of(run)
    ids = [ins["id"] for ins in index["insights"]]
    assert [t["id"] for t in index["themes"]] == [t.theme_id for t in run.themes]
    for packed, theme in zip(index["themes"], run.themes, strict=True):
        assert [ids[p] for p in packed["m"]] == theme.insight_ids
        assert [ids[p] for p in packed["r"]] == [r.insight_id for r in theme.representatives]
        assert (packed["k"], packed["label"], packed["desc"]) == (theme.kind, theme.label, theme.description)
        assert all(index["insights"][p]["k"] == theme.kind for p in packed["m"])
    assert [e["id"] for e in index["champions"]] == [e.entity_id for e in run.entities]
    docs = [d["id"] for d in index["docs"]]
    for packed, entity in zip(index["champions"], run.entities, strict=True):
        assert sorted(ids[p] for p in packed["m"]) == entity.insight_ids
        assert [[a, n, [docs[d] for d in ds]] for a, n, ds in packed["a"]] == [
            [a.alias, a.mentions, a.documents] for a in entity.aliases
        ]
        assert [tuple(m) for m in packed["mg"]] == [(m.rule, m.reason) for m in entity.merges]
    assert (index["themes_file"], index["champions_file"]) == ("run.themes.jsonl", "run.themes.champions.jsonl")


def test_counts_recomputed_from_the_members_in_the_index_equal_the_themes(run: SimpleNamespace) -> None:
    """The pages store no count: they recount from the members. That recount, done here on the index
    as report_themes.js does it, gives each theme's own counts and tallies."""
    index = index_of(run)
    for packed, theme in zip(index["themes"], run.themes, strict=True):
        members = [index["insights"][p] for p in packed["m"]]
        docs = [index["docs"][m["d"]] for m in members]
        assert len({m["d"] for m in members}) == theme.n_documents == len(theme.documents)
        assert _tally([d["country"] for d in docs]) == [(c.value, c.count) for c in theme.countries]
        assert len({d["country"] for d in docs} - {""}) == theme.n_countries
        years = [str(d["year"]) for d in docs if d["year"] is not None]
        assert _tally(years) == [(c.value, c.count) for c in theme.years]
        assert _tally([d["type"] for d in docs]) == [(c.value, c.count) for c in theme.types]
        assert _tally([m["c"] for m in members]) == [(c.value, c.count) for c in theme.categories]
        assert _tally([m["l"] for m in members]) == [(c.value, c.count) for c in theme.levels]
    for packed, entity in zip(index["champions"], run.entities, strict=True):
        docs = [index["docs"][index["insights"][p]["d"]] for p in packed["m"]]
        assert len({d["id"] for d in docs}) == entity.n_documents
        assert _tally([d["country"] for d in docs]) == [(c.value, c.count) for c in entity.countries]


def test_filter_options_count_the_themes_with_a_matching_member(run: SimpleNamespace) -> None:
    by_id = {line["insight_id"]: line for line in run.lines}
    options = filter_options(build_report(run.out, run.paths))

    def values(line: dict[str, Any]) -> dict[str, str]:
        year = str(line["year"]) if line["year"] is not None else NONE
        return {"country": line["country"] or NONE, "year": year, "type": line["type"] or NONE}

    for key in ("country", "year", "type"):
        want = Counter(v for t in run.themes for v in {values(by_id[i])[key] for i in t.insight_ids})
        assert dict(options["themes"][key]) == dict(want), key
        want = Counter(v for e in run.entities for v in {values(by_id[i])[key] for i in e.insight_ids})
        assert dict(options["champions"][key]) == dict(want), key
    assert dict(options["themes"]["kind"]) == dict(Counter(t.kind for t in run.themes))
    assert "kind" not in options["champions"]


def test_the_pages_are_in_the_file_only_with_a_themes_file(run: SimpleNamespace) -> None:
    with_themes = render_report(build_report(run.out, run.paths))
    for marker in ('id="page-themes"', 'id="page-theme"', 'id="page-champions"', 'href="#themes"',
                   "INSIGHTS_PAGES = window.INSIGHTS_PAGES"):  # fmt: skip
        assert marker in with_themes
    assert f">Themes ({len(run.themes)})<" in with_themes and f">Champions ({len(run.entities)})<" in with_themes
    plain = build_report(run.out, run.paths, themes=False)
    html = render_report(plain)
    assert "themes" not in unpack(pack_index(plain)[0])
    assert 'id="page-themes"' not in html and 'href="#themes"' not in html and "INSIGHTS_PAGES.push" not in html
    assert 'id="page-themes"' in with_themes and len(html) < len(with_themes)


# ------------------------------------------------------------------------------------------------ CLI
def test_report_reads_the_default_themes_file_another_one_or_none(
    run: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "r.html"
    assert cli.main(["report", str(run.out), *map(str, run.paths), "-o", str(html)]) == 0
    assert 'id="page-themes"' in html.read_text(encoding="utf-8")
    assert cli.main(["report", str(run.out), *map(str, run.paths), "-o", str(html), "--no-themes"]) == 0
    assert 'id="page-themes"' not in html.read_text(encoding="utf-8")
    other = tmp_path / "other.jsonl"  # named: its champions file is other.champions.jsonl, here absent
    shutil.copy(run.themes_path, other)
    assert cli.main(["report", str(run.out), *map(str, run.paths), "-o", str(html), "--themes", str(other)]) == 0
    text = html.read_text(encoding="utf-8")
    assert 'id="page-themes"' in text and 'id="page-champions"' not in text
    capsys.readouterr()
    missing = tmp_path / "none.jsonl"
    assert cli.main(["report", str(run.out), "-o", str(html), "--themes", str(missing)]) == cli.EXIT_USAGE
    assert f"{missing}: no such themes file" in capsys.readouterr().err


def test_themes_naming_insights_not_in_the_output_are_left_out_and_said(
    run: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "stale.jsonl"
    first = run.themes[0].model_dump(mode="json")
    gone = dict(first, theme_id="thm_gone", insight_ids=[*first["insight_ids"], "ins_not_in_the_output"])
    stale.write_text("".join(json.dumps(x) + "\n" for x in [gone, *(t.model_dump(mode="json") for t in run.themes)]))
    html = tmp_path / "r.html"
    assert cli.main(["report", str(run.out), *map(str, run.paths), "-o", str(html), "--themes", str(stale)]) == 0
    err = capsys.readouterr().err
    assert f"note: 1 of {len(run.themes) + 1} themes in {stale} name insights that are not in {run.out}" in err
    index = unpack(html.read_text(encoding="utf-8").split('id="insights-index">')[1].split("<")[0])
    assert [t["id"] for t in index["themes"]] == [t.theme_id for t in run.themes]
    assert "name insights that are not in" in html.read_text(encoding="utf-8")  # said on the page too


def test_a_line_that_is_not_a_theme_is_an_error_naming_it(run: SimpleNamespace, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(run.themes_path.read_text(encoding="utf-8").splitlines()[0] + '\n{"theme_id": "thm_x"}\n')
    with pytest.raises(OutputError, match=f"{bad}: line 2 is not a theme line"):
        write_report(run.out, tmp_path / "r.html", run.paths, themes=bad)
    assert not (tmp_path / "r.html").exists()


def test_pseudonymised_champions_are_shown_by_pseudonym_with_a_warning(run: SimpleNamespace, tmp_path: Path) -> None:
    named = tmp_path / "p.jsonl"
    assert cli.main(["themes", str(run.out), "--vectors", "tfidf", "--pseudonymise-persons", "-o", str(named)]) == 0
    report = build_report(run.out, run.paths, themes=named)
    assert report.themes is not None and report.themes.champions_path == tmp_path / "p.champions.jsonl"
    persons = [e for e in report.themes.champions if e.champion_type == "person"]
    assert persons and all(e.pseudonymised and e.name.startswith("Person ") for e in persons)
    index = unpack(pack_index(report)[0])
    assert {e["name"] for e in index["champions"] if e["ps"]} == {e.name for e in persons}
    html = render_report(report)
    assert "Persons were pseudonymised in <code>p.champions.jsonl</code> only" in html
    assert "Persons were pseudonymised" not in render_report(build_report(run.out, run.paths))
