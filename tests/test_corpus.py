"""Reading a corpus: bad files are listed and the rest read; ids stay unique when stems collide; sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import insights
from insights.corpus import corpus_files, load_corpus, picks_up, scan_corpus
from insights.errors import DocumentError

GOOD = "# Title {n}\n\nThe lab ran pilot {n} with the city.\n"


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def test_every_unreadable_file_is_listed_with_its_reason_and_the_rest_is_read(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root, "a.md", GOOD.format(n=1))
    write(root, "empty.md", b"")
    write(root, "report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    write(root, "sub/b.md", GOOD.format(n=2))
    write(root, "sub/latin1.txt", "Caf\u00e9 ferm\u00e9.".encode("latin-1"))
    write(root, "c.jsonl", "\n".join([json.dumps({"id": "r1", "text": "fine"}), "{oops", '{"id": "r3"}', ""]))

    corpus = scan_corpus(root)

    assert [(d.id, d.source) for d in corpus.documents] == [("a", "a.md"), ("r1", "c.jsonl"), ("b", "sub/b.md")]
    failures = {f.source: f for f in corpus.failures}
    assert sorted(failures) == ["c.jsonl", "empty.md", "report.pdf", "sub/latin1.txt"]
    assert failures["empty.md"].error.reason == "empty file"
    assert "cannot read this PDF file" in failures["report.pdf"].error.reason  # a broken PDF (converters)
    assert "not UTF-8" in failures["sub/latin1.txt"].error.reason
    jsonl = failures["c.jsonl"]  # one failure for the file, naming each bad line
    assert jsonl.document_id == "c" and "2 records" in jsonl.error.reason
    assert "line 2" in jsonl.error.reason and "line 3" in jsonl.error.reason
    assert (failures["sub/latin1.txt"].document_id, failures["sub/latin1.txt"].path) == (
        "latin1",
        str(root / "sub" / "latin1.txt"),
    )
    # The raising API is unchanged: the first bad file stops it.
    with pytest.raises(DocumentError, match="c.jsonl"):
        load_corpus(root)
    assert insights.scan_corpus is scan_corpus


def test_ids_are_stems_unless_stems_collide_then_paths(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    for name in ("a/report.md", "b/report.md", "b/report.txt", "unique.md", "c/notes.md", "d/notes"):
        write(root, name, GOOD.format(n=name))
    docs = load_corpus(root)
    assert sorted(d.id for d in docs) == sorted(
        ["a/report", "b/report.md", "b/report.txt", "unique", "c/notes", "d/notes"]
    )
    assert {d.id: d.source for d in docs}["b/report.md"] == "b/report.md"
    # The same stem through two inputs: a file given by name has its path as given for source.
    other = tmp_path / "other"
    write(other, "unique.md", GOOD.format(n="other"))
    ids = sorted(d.id for d in load_corpus([root / "unique.md", other]))
    assert ids == sorted([(root / "unique").as_posix(), "unique"])
    # Two folders with the same file at their roots: sources collide too, the path as found decides.
    for folder in ("f1", "f2"):
        write(tmp_path / folder, "same.md", GOOD.format(n=folder))
    ids = [d.id for d in load_corpus([tmp_path / "f1", tmp_path / "f2"])]
    assert ids == [(tmp_path / "f1" / "same").as_posix(), (tmp_path / "f2" / "same").as_posix()]
    assert len({d.id for d in load_corpus([root, other])}) == 7


def test_sources_are_relative_to_the_input_they_were_found_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "docs/x/one.md", GOOD.format(n=1))
    write(tmp_path, "docs/two.md", GOOD.format(n=2))
    write(tmp_path, "three.md", GOOD.format(n=3))
    assert [d.source for d in load_corpus("docs")] == ["two.md", "x/one.md"]
    assert [d.source for d in load_corpus("docs/**/*.md")] == ["two.md", "x/one.md"]
    assert [d.source for d in load_corpus(["./three.md"])] == ["./three.md"]  # a file: the path as given
    assert [d.source for d in load_corpus("*.md")] == ["three.md"]
    assert [p.name for p in corpus_files("docs")] == ["two.md", "one.md"]


def test_picks_up_says_which_input_would_read_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "docs/a.md", GOOD.format(n=1))
    assert picks_up(["docs"], "docs/new/out.jsonl") == "docs"
    assert picks_up(["docs"], "docs/.hidden/out.jsonl") is None
    assert picks_up(["docs"], "out.jsonl") is None
    assert picks_up(["docs/a.md", "other/*.jsonl"], "other/out.jsonl") == "other/*.jsonl"
    assert picks_up(["docs/**"], "docs/deep/er/out.jsonl") == "docs/**"
    assert picks_up(["docs/*.md"], "docs/out.jsonl") is None
    assert picks_up([str(tmp_path / "docs")], "docs/out.jsonl") == str(tmp_path / "docs")
