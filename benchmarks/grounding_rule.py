"""What the fuzzy grounding rule accepts and rejects, over quotes made by perturbing real sentences. Not a test.

Usage (from the repository root)::

    python benchmarks/grounding_rule.py                  # ../shared/corpus, 4 sentences a document
    python benchmarks/grounding_rule.py PATH [--per-doc 8] [--seed 1]

From each document it takes sentences (60-300 characters, no markup) and makes a quote of each kind:

* benign slips, which the rule should accept: a typo (a letter dropped, doubled or two swapped), a
  dropped article, British/American spelling, curly quote marks, a typo plus a dropped article;
* meaning changes, which it must reject: a negation added (``not`` after an auxiliary) or dropped, a
  digit changed, a content word swapped for an antonym or another word of the document.

Each quote is located in its own document by :class:`insights.grounding.Grounder` (the rule now), and by
the previous rule (the best partial alignment scoring at least 90 and about as long as the quote,
emulated here). It prints, per kind, how many each rule accepts, the reasons the rule now gives, and,
for the previous rule, how many accepted passages score below 90 against the quote (``fuzz.ratio``).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rapidfuzz import fuzz  # noqa: E402

from insights.documents import Document, load_corpus  # noqa: E402
from insights.grounding import FUZZY_THRESHOLD, MIN_QUOTE_CHARS, Grounder, normalize  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
SENTENCE = re.compile(r"(?<=[.!?])\s+")
AUXILIARY = re.compile(r"\b(is|was|are|were|has|have|had|can|could|will|would|should|did|does|do)\b ")
NEGATION = re.compile(r"\b(not|never|no) ")
ARTICLE = re.compile(r"\b(the|a|an) ", re.IGNORECASE)
DIGIT = re.compile(r"\d")
SPELLING = [
    ("isation", "ization"), ("ization", "isation"), ("colour", "color"), ("labour", "labor"),
    ("behaviour", "behavior"), ("neighbour", "neighbor"), ("favour", "favor"), ("centre", "center"),
    ("programme", "program"), ("analyse", "analyze"), ("organise", "organize"), ("prioritise", "prioritize"),
    ("recognise", "recognize"), ("utilise", "utilize"), ("mobilise", "mobilize"), ("realise", "realize"),
]  # fmt: skip
ANTONYMS = [
    ("increase", "decrease"), ("success", "failure"), ("successful", "unsuccessful"), ("approved", "rejected"),
    ("scaled", "scrapped"), ("more", "less"), ("higher", "lower"), ("before", "after"), ("strong", "weak"),
    ("possible", "impossible"), ("formal", "informal"), ("effective", "ineffective"), ("able", "unable"),
    ("public", "private"), ("women", "men"), ("local", "national"), ("support", "oppose"), ("easy", "hard"),
]  # fmt: skip
BENIGN = ("typo", "dropped article", "spelling", "curly quotes", "typo + dropped article")
ADVERSE = ("negation added", "negation dropped", "number changed", "antonym", "word swapped")


def sentences(doc: Document) -> list[str]:
    found = []
    for line in doc.text.split("\n"):
        if line.startswith(("## ", "> ")):
            continue
        for s in SENTENCE.split(line):
            s = s.strip()
            if 60 <= len(s) <= 300 and not set(s) & set("<>[]{}|#*`\\") and sum(c.isalpha() for c in s) > 0.7 * len(s):
                found.append(s)
    return found


def typo(s: str, rng: random.Random) -> str | None:
    words = [m for m in re.finditer(r"\b[a-z]{6,}\b", s)]
    if not words:
        return None
    m = rng.choice(words)
    w = m.group(0)
    i = rng.randrange(1, len(w) - 2)
    how = rng.choice(("drop", "double", "swap"))
    if how == "drop":
        new = w[:i] + w[i + 1 :]
    elif how == "double":
        new = w[:i] + w[i] + w[i:]
    else:
        new = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    return s[: m.start()] + new + s[m.end() :]


def drop_article(s: str, rng: random.Random) -> str | None:
    found = [m for m in ARTICLE.finditer(s) if m.start() > 0]
    if not found:
        return None
    m = rng.choice(found)
    return s[: m.start()] + s[m.end() :]


def spelling(s: str, rng: random.Random) -> str | None:
    options = [(a, b) for a, b in SPELLING if a in s]
    if not options:
        return None
    a, b = rng.choice(options)
    return s.replace(a, b, 1)


def curly(s: str, rng: random.Random) -> str | None:
    if "'" not in s and '"' not in s:
        return None
    return s.replace("'", "\u2019").replace('"', "\u201c")


def typo_and_article(s: str, rng: random.Random) -> str | None:
    t = typo(s, rng)
    return drop_article(t, rng) if t else None


def add_negation(s: str, rng: random.Random) -> str | None:
    m = AUXILIARY.search(s)
    return s[: m.end()] + "not " + s[m.end() :] if m else None


def drop_negation(s: str, rng: random.Random) -> str | None:
    m = NEGATION.search(s)
    return s[: m.start()] + s[m.end() :] if m else None


def change_number(s: str, rng: random.Random) -> str | None:
    digits = [m.start() for m in DIGIT.finditer(s)]
    if not digits:
        return None
    i = rng.choice(digits)
    return s[:i] + str((int(s[i]) + rng.randrange(1, 10)) % 10) + s[i + 1 :]


def antonym(s: str, rng: random.Random) -> str | None:
    options = [(a, b) for a, b in ANTONYMS if re.search(rf"\b{a}\b", s)]
    options += [(b, a) for a, b in ANTONYMS if re.search(rf"\b{b}\b", s)]
    if not options:
        return None
    a, b = rng.choice(options)
    return re.sub(rf"\b{a}\b", b, s, count=1)


def make_swap(vocabulary: list[str]) -> Callable[[str, random.Random], str | None]:
    def swap(s: str, rng: random.Random) -> str | None:
        words = [m for m in re.finditer(r"\b[a-z]{5,}\b", s)]
        if not words:
            return None
        m = rng.choice(words)
        w = m.group(0)
        others = [v for v in vocabulary if abs(len(v) - len(w)) <= 2 and fuzz.ratio(v, w) < 60]
        if not others:
            return None
        return s[: m.start()] + rng.choice(others) + s[m.end() :]

    return swap


def previous_rule(g: Grounder, quote: str) -> tuple[str, float | None]:
    """The rule before: exact, normalized, else the best partial alignment >= 90 about as long as the quote.

    Returns the match (``exact``, ``normalized``, ``fuzzy`` or ``none``) and, for ``fuzzy``, the ratio of
    the quote to the passage it stored.
    """
    if quote in g.text:
        return "exact", None
    needle = normalize(quote).strip(" \"'.,;:")
    if len(needle) < MIN_QUOTE_CHARS:
        return "none", None
    g._index()
    if needle in g._norm:
        return "normalized", None
    found = fuzz.partial_ratio_alignment(needle, g._norm, score_cutoff=FUZZY_THRESHOLD)
    if found is None or abs(found.dest_end - found.dest_start - len(needle)) > 0.2 * len(needle):
        return "none", None
    start, end = g._span(found.dest_start, found.dest_end)
    text = g.text
    while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
        end += 1
    return "fuzzy", fuzz.ratio(needle, normalize(text[start:end]).strip(" \"'.,;:"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_CORPUS), help="file, folder or glob")
    parser.add_argument("--per-doc", type=int, default=4, help="sentences taken from each document (default 4)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    docs = load_corpus(args.path)
    rng = random.Random(args.seed)
    kinds: dict[str, Callable[[str, random.Random], str | None]] = {
        "typo": typo,
        "dropped article": drop_article,
        "spelling": spelling,
        "curly quotes": curly,
        "typo + dropped article": typo_and_article,
        "negation added": add_negation,
        "negation dropped": drop_negation,
        "number changed": change_number,
        "antonym": antonym,
    }
    made: Counter[str] = Counter()
    before: dict[str, Counter[str]] = defaultdict(Counter)
    now: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    low_before = 0
    fuzzy_before = 0
    samples: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for doc in docs:
        vocabulary = sorted(set(re.findall(r"\b[a-z]{5,}\b", doc.text)))
        plan = dict(kinds, **{"word swapped": make_swap(vocabulary)})
        g = Grounder(doc.text)
        pool = sentences(doc)
        rng.shuffle(pool)
        for sentence in pool[: args.per_doc]:
            for kind, perturb in plan.items():
                quote = perturb(sentence, rng)
                if quote is None or quote == sentence:
                    continue
                made[kind] += 1
                old, old_score = previous_rule(g, quote)
                before[kind][old] += 1
                if old == "fuzzy":
                    fuzzy_before += 1
                    low_before += int(old_score is not None and old_score < FUZZY_THRESHOLD)
                hit = g.locate(quote)
                if hit is None:
                    why = g.miss(quote).reason
                    label = why.split(":")[0].replace("differs from the source in ", "")
                    now[kind]["rejected"] += 1
                    reasons[kind][label] += 1
                    if len(samples[kind]) < 2 and "differs" in why:
                        samples[kind].append((quote, sentence, why))
                else:
                    now[kind][hit.match] += 1
    print(f"corpus {args.path}: {len(docs)} documents, {args.per_doc} sentences each, seed {args.seed}")
    print()
    head = f"{'quote made by':<24} {'n':>5}   {'before: accepted (fuzzy)':>24}   {'now: accepted (fuzzy)':>22}"
    head += "   now: rejected for"
    print(head)
    print("-" * len(head))
    for group in (BENIGN, ADVERSE):
        for kind in group:
            n = made[kind]
            if not n:
                continue
            b, c = before[kind], now[kind]
            b_ok, c_ok = n - b["none"], n - c["rejected"]
            why = ", ".join(f"{k} {v}" for k, v in reasons[kind].most_common())
            before_cell = f"{b_ok:>6} {b_ok / n:>5.0%} ({b['fuzzy']:>4})"
            now_cell = f"{c_ok:>6} {c_ok / n:>5.0%} ({c['fuzzy']:>4})"
            print(f"{kind:<24} {n:>5}   {before_cell}       {now_cell}     {why}")
        print()
    print(
        f"previous rule: {low_before} of {fuzzy_before} fuzzy passages score below {FUZZY_THRESHOLD:g} "
        "against the quote"
    )
    print("rule now: every fuzzy passage scores at least that against the quote (the score is the passage's)")
    print()
    for kind, rows in samples.items():
        for quote, sentence, why in rows:
            print(f"[{kind}] {why}\n    quote:  {quote}\n    source: {sentence}")
    print()
    again = " ".join(["python", "benchmarks/grounding_rule.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"reproduce (from the repository root): {again}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
