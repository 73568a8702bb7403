"""Check themes and champion resolution against a labelled set: ``python -m insights.themes_eval``.

The labelled set (``evals/themes/``, written by people reading the annotated documents):

``pairs.jsonl``    ``{"a": {document_id, kind, statement}, "b": {...}, "same": bool, "note": str}``: two
                   insights of the reference annotations (``evals/seeds``, ``evals/corpus``) that belong to
                   one theme or not. Insights are named by document and statement, not by ``insight_id``,
                   so the set survives a change of the id recipe.
``aliases.jsonl``  ``{"a": {name, country, champion_type, sector, document_id}, "b": {...}, "same": bool,
                   "note": str}``: two mentions of a champion, as the documents write them, that are or are
                   not the same person or organisation.

The input is built without a model: every annotation is grounded in its document by the library
(:class:`~insights.grounding.GroundedExtraction`) and written as output records
(:func:`~insights.output.insight_records`), exactly as an extraction that returned the annotations
would be. Themes run over those records; champions over the annotated champions plus one record per
mention of ``aliases.jsonl``. A pair is predicted *same* when both insights are members of one theme
(one entity). Pairwise precision = same-and-predicted / predicted, recall = same-and-predicted / same.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .champions import champions
from .documents import load_corpus
from .errors import ConfigError
from .evaluate import load_annotations
from .extract import _merge, _records
from .grounding import GroundedExtraction, Grounder, GroundingContext, normalize
from .ids import digest_id
from .output import insight_records
from .schema import DocumentInsights, Provenance
from .themes import themes
from .vectors import DEFAULT_MIN_SIMILARITY, resolve_method

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS = (REPO / "evals" / "seeds", REPO / "evals" / "corpus")
DOCUMENTS = (REPO / "seeds", REPO / "evals" / "corpus" / "documents")
LABELS = REPO / "evals" / "themes"


@dataclass
class PairScore:
    """Pairwise counts over a labelled set."""

    same: int = 0
    different: int = 0
    true_positive: int = 0
    false_positive: int = 0

    @property
    def precision(self) -> float:
        predicted = self.true_positive + self.false_positive
        return self.true_positive / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        return self.true_positive / self.same if self.same else 0.0

    def add(self, same: bool, predicted: bool) -> None:
        self.same += same
        self.different += not same
        self.true_positive += same and predicted
        self.false_positive += predicted and not same


def annotated_records(
    annotations: Sequence[str | Path] = ANNOTATIONS, documents: Sequence[str | Path] = DOCUMENTS
) -> list[dict[str, Any]]:
    """Output records of the reference annotations, grounded in their documents by the library."""
    docs = {d.id: d for d in load_corpus([str(p) for p in documents])}
    out: list[dict[str, Any]] = []
    for folder in annotations:
        for doc_id, extraction in sorted(load_annotations(folder).items()):
            if doc_id not in docs:
                raise ConfigError(f"annotation {doc_id!r} in {folder} has no document in {list(documents)}")
            doc = docs[doc_id]
            context = GroundingContext(Grounder(doc.text), doc.section_at)
            answer = GroundedExtraction.model_validate(extraction, context={"grounding": context})
            kept, rejected = _merge(answer.grounded)
            if rejected:
                raise ConfigError(f"annotation {doc_id!r}: {rejected[0].reason}")
            recs = _records(kept)
            result = DocumentInsights(
                document_id=doc.id,
                title=doc.title,
                barriers=recs["barrier"],
                enablers=recs["enabler"],
                champions=recs["champion"],
                failed_experiments=recs["failed_experiment"],
                provenance=Provenance(model="reference-annotation", prompt_version="", extracted_at=""),
            )
            out.extend(insight_records(doc, result))
    return out


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a labelled ``*.jsonl`` file."""
    with open(path, encoding="utf-8") as fp:
        return [json.loads(line) for line in fp if line.strip()]


def _key(document_id: str, kind: str, statement: str) -> tuple[str, str, str]:
    return (document_id, kind, normalize(statement))


def score_themes(records: list[dict[str, Any]], pairs: Iterable[dict[str, Any]], **options: Any) -> PairScore:
    """Pairwise precision and recall of :func:`insights.themes.themes` over ``records``."""
    ids = {_key(r["document_id"], r["kind"], r["statement"]): r["insight_id"] for r in records}
    theme_of = {iid: t.theme_id for t in themes(records, **options) for iid in t.insight_ids}
    score = PairScore()
    for pair in pairs:
        a, b = (ids.get(_key(p["document_id"], p["kind"], p["statement"])) for p in (pair["a"], pair["b"]))
        if a is None or b is None:
            raise ConfigError(f"labelled pair names an insight that is not in the records: {pair}")
        score.add(bool(pair["same"]), a in theme_of and theme_of.get(a) == theme_of.get(b))
    return score


def mention_record(mention: dict[str, Any]) -> dict[str, Any]:
    """A champion record for one labelled mention (evidence-free, id from its name and document)."""
    iid = digest_id("ins", ["alias-mention", mention["document_id"], mention["name"]])
    return {
        "kind": "champion", "insight_id": iid, "document_id": mention["document_id"], "name": mention["name"],
        "champion_type": mention.get("champion_type", "organization"), "sector": mention.get("sector", "unknown"),
        "country": mention.get("country", ""), "statement": "", "evidence": [],
    }  # fmt: skip


def score_champions(records: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> PairScore:
    """Pairwise precision and recall of :func:`insights.champions.champions` on labelled mention pairs."""
    mentions = {mention_record(m)["insight_id"]: mention_record(m) for p in pairs for m in (p["a"], p["b"])}
    entity_of = {
        iid: e.entity_id
        for e in champions([*records, *[mentions[k] for k in sorted(mentions)]])
        for iid in e.insight_ids
    }
    score = PairScore()
    for pair in pairs:
        a, b = (mention_record(m)["insight_id"] for m in (pair["a"], pair["b"]))
        score.add(bool(pair["same"]), entity_of[a] == entity_of[b])
    return score


def main(argv: Sequence[str] | None = None) -> int:
    """Print pairwise precision and recall of themes and of champion resolution on the labelled set."""
    parser = argparse.ArgumentParser(
        prog="python -m insights.themes_eval",
        description="Pairwise precision and recall of themes and champion resolution on evals/themes.",
    )
    parser.add_argument("--labels", default=str(LABELS), help="folder with pairs.jsonl and aliases.jsonl")
    parser.add_argument("--vectors", default="auto", choices=["auto", "wordllama", "tfidf"])
    parser.add_argument("--min-similarity", type=float, help="default: the vector method's")
    parser.add_argument("--sweep", action="store_true", help="also print themes at other min-similarity values")
    args = parser.parse_args(argv)
    records = annotated_records()
    pairs = read_labels(Path(args.labels) / "pairs.jsonl")
    aliases = read_labels(Path(args.labels) / "aliases.jsonl")
    documents = len({r["document_id"] for r in records})
    themed = sum(r["kind"] != "champion" for r in records)
    print(f"input: {themed} barriers/enablers/failed experiments and the champions of {documents} annotated documents")
    print(f"{'what':<44} {'same':>5} {'diff':>5} {'TP':>4} {'FP':>4} {'precision':>9} {'recall':>6}")
    method = resolve_method(args.vectors)
    default = DEFAULT_MIN_SIMILARITY[method] if args.min_similarity is None else args.min_similarity
    sims = [default]
    if args.sweep:
        sims = sorted({default, *(round(default * f, 3) for f in (0.4, 0.6, 0.8, 1.2, 1.4, 1.6))})
    for sim in sims:
        s = score_themes(records, pairs, min_similarity=sim, vectors=method)
        name = f"themes ({method}, min similarity {sim:g})"
        print(f"{name:<44} {s.same:>5} {s.different:>5} {s.true_positive:>4} {s.false_positive:>4} "
              f"{s.precision:>9.3f} {s.recall:>6.3f}")  # fmt: skip
    c = score_champions(records, aliases)
    print(f"{'champion resolution':<44} {c.same:>5} {c.different:>5} {c.true_positive:>4} {c.false_positive:>4} "
          f"{c.precision:>9.3f} {c.recall:>6.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
