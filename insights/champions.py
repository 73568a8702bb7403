"""Champions resolved across documents: one entity per person or organisation, however it is written.

    >>> for e in insights.champions(insights.read_records("out.jsonl")):
    ...     print(e.name, e.aliases, e.n_documents, [m.reason for m in e.merges])

Mentions and aliases
--------------------
Each champion record is a *mention*. Its name is normalised (:func:`name_key`): accents and case
folded, ``&`` read as "and", punctuation dropped, British spellings read as American (centre, labour,
organisation, programme…), a leading article ("the", "la", "el"…) and a leading possessive of the
mention's own country ("Viet Nam's") dropped. A trailing parenthesis is split off: an acronym
("National Innovation Center (NIC)") is kept as the mention's acronym, anything else (a parent body) is
dropped from the name. Persons also lose titles (Mr, Ms, Dr, Hon, H.E.…) and their name's word order is
ignored. Mentions with the same normalised name, compatible type and the same block are one *alias*.

Blocks
------
Only aliases in the same block are compared: the same ``country`` (the document's first country tag; an
empty one is its own block). An organisation whose ``sector`` is ``international`` is also compared
with international organisations of every country (the ILO is one organisation wherever it is named).
Persons never merge with organisations or teams; organisations and teams may merge.

Rules (each merge is one edge, recorded with its rule and reason)
-----------------------------------------------------------------
``acronym``       both declare the same acronym: "NIC" and "National Innovation Center (NIC)".
``initials``      one's acronym (three letters or more) is the initials of the other's content words:
                  "NIC" and "National Innovation Centre".
``fuzzy``         organisations whose content words, sorted, score at least :data:`FUZZY_THRESHOLD` with
                  rapidfuzz's ``token_sort_ratio``: word order and small spelling differences.
``person``        persons whose name words are the same, or where one name keeps the first and last
                  words of the other and adds middle ones ("Persis Namuganza", "Persis Princess
                  Namuganza"). A single-word name never merges: people are handled with care.
Two organisations that declare *different* acronyms never merge by any rule.

Entities are the connected groups of aliases. Every merge has a ``merge_id``
(``digest_id("mrg", [sorted alias keys, rule])``); pass it in ``undo`` to drop that edge (the entity
splits unless another edge still joins it).

Contract (``entity_id``)::

    "chp_" + sha256(canonical JSON of ["champion/1", sorted member insight_ids]).hexdigest()[:20]

It changes when the entity's mentions change. With ``pseudonymise=True``, each person entity's name
and aliases become ``"Person " + 6 hex digits`` (a digest of its id), and those names are replaced in
its contributions, statements and quotes (``redacted`` is set; offsets still index the original text).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from .ids import digest_id
from .themes import Count, as_dict, record_id

CHAMPION_RECIPE = "champion/1"
FUZZY_THRESHOLD = 92.0
_SPELLING = {
    "centre": "center", "centres": "centers", "labour": "labor", "organisation": "organization",
    "organisations": "organizations", "programme": "program", "programmes": "programs", "defence": "defense",
    "honour": "honor", "favour": "favor", "behaviour": "behavior", "analyse": "analyze",
}  # fmt: skip
_ARTICLES = {"the", "la", "le", "les", "el", "los", "las", "l", "o", "a", "os", "as"}
_CONNECTORS = {
    "of", "and", "for", "the", "de", "del", "la", "las", "los", "el", "y", "et", "des", "du", "pour", "on",
    "in", "da", "do", "dos", "das", "e", "en", "to", "at", "a", "l", "d",
}  # fmt: skip
_TITLES = {
    "mr", "mrs", "ms", "miss", "dr", "prof", "professor", "hon", "honorable", "honourable", "he", "sir",
    "madam", "mme", "mlle", "m", "sr", "sra", "srta", "dra", "don", "dona", "dame", "eng", "engr",
}  # fmt: skip
_PAREN = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")


class Alias(BaseModel):
    """One way an entity is written, and where."""

    alias: str
    mentions: int
    documents: list[str]


class Contribution(BaseModel):
    """What one mention says the champion did, with its first evidence passage."""

    insight_id: str
    document_id: str
    country: str = ""
    name: str
    contribution: str = ""
    statement: str = ""
    quote: str = ""
    start: int | None = None
    end: int | None = None
    redacted: bool = False


class Merge(BaseModel):
    """One edge that joined two aliases: undo it by passing ``merge_id`` to :func:`champions`."""

    merge_id: str
    a: str
    b: str
    rule: str
    reason: str


class ChampionEntity(BaseModel):
    """A person, organisation or team, resolved across the documents that name it."""

    entity_id: str
    name: str
    acronym: str = ""
    champion_type: str
    aliases: list[Alias]
    insight_ids: list[str]
    n_mentions: int
    n_documents: int
    n_countries: int
    documents: list[str]
    countries: list[Count]
    sectors: list[Count]
    affiliations: list[Count]
    contributions: list[Contribution]
    merges: list[Merge] = Field(default_factory=list)
    pseudonymised: bool = False
    recipe: str = CHAMPION_RECIPE


# -------------------------------------------------------------------------------------- normalising
def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = text.replace("&", " and ").replace("’", "'")
    return " ".join(re.sub(r"[^\w']+", " ", text).split())


def _is_acronym(text: str) -> bool:
    t = text.strip().replace(".", "")
    return 2 <= len(t) <= 12 and " " not in t and sum(c.isupper() for c in t) >= 2 and t.isalnum()


def split_name(name: str) -> tuple[str, str]:
    """``(base name, acronym)``: a trailing parenthesised acronym is split off, another parenthesis
    dropped; a name that is itself an acronym is its own acronym."""
    base, acronym = " ".join(name.split()), ""
    match = _PAREN.match(base)
    if match:
        base = match.group(1).strip() or base
        inner = match.group(2).strip()
        if _is_acronym(inner):
            acronym = inner.replace(".", "").upper()
    if not acronym and _is_acronym(base):
        acronym = base.replace(".", "").upper()
    return base, acronym


def name_key(name: str, *, country: str = "", person: bool = False) -> str:
    """The normalised form of a name (see the module docstring); persons' words sorted."""
    words = [_SPELLING.get(w, w) for w in _fold(name).replace("'s ", " 's ").split()]
    land = _fold(country).replace(" ", "")
    if "'s" in words[:4] and land and "".join(words[: words.index("'s")]) == land:
        words = words[words.index("'s") + 1 :]  # "Viet Nam's National Innovation Centre"
    words = [w for w in words if w != "'s"]
    while len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    if person:
        words = sorted(w for w in words if w.strip("'") not in _TITLES)
    return " ".join(w.strip("'") for w in words if w.strip("'"))


def initials(key: str) -> str:
    """Initials of the content words of a normalised name ("national innovation center" → "NIC")."""
    return "".join(w[0] for w in key.split() if w not in _CONNECTORS).upper()


# ------------------------------------------------------------------------------------------ resolving
@dataclass
class _Alias:
    key: str  # block + type group + normalised name: identity of the alias
    block: str
    person: bool
    international: bool
    norm: str
    acronym: str
    words: list[str]  # persons: the name's words in order, without titles
    shown: Counter[str] = field(default_factory=Counter)
    records: list[dict[str, Any]] = field(default_factory=list)


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _aliases(records: Iterable[Any]) -> list[_Alias]:
    found: dict[str, _Alias] = {}
    seen: set[str] = set()
    for raw in records:
        r = as_dict(raw)
        if r.get("kind") != "champion" or not str(r.get("name") or "").strip():
            continue
        iid = record_id(r)
        if iid in seen:
            continue
        seen.add(iid)
        person = r.get("champion_type") == "person"
        country = str(r.get("country") or "")
        base, acronym = split_name(str(r["name"]))
        norm = name_key(base, country=country, person=person) or _fold(base)
        block = _fold(country)
        key = f"{block}|{'p' if person else 'o'}|{norm}"
        words = [w for w in _fold(base).split() if w not in _TITLES] if person else []
        alias = found.setdefault(
            key, _Alias(key, block, person, r.get("sector") == "international" and not person, norm, acronym, words)
        )
        alias.acronym = alias.acronym or acronym
        alias.international = alias.international or (r.get("sector") == "international" and not person)
        alias.shown[" ".join(str(r["name"]).split())] += 1
        alias.records.append({**r, "insight_id": iid})
    return [found[k] for k in sorted(found)]


def _content(norm: str) -> str:
    return " ".join(sorted(w for w in norm.split() if w not in _CONNECTORS))


def _edge(a: _Alias, b: _Alias) -> tuple[str, str] | None:
    """The rule and reason that join two aliases of one block, or ``None``."""
    if a.person != b.person:
        return None
    if a.person:
        if len(a.words) < 2 or len(b.words) < 2:
            return None
        if a.norm == b.norm:
            return "person", "the same name words, in another order or with another title"
        short, long_ = sorted((a.words, b.words), key=len)
        if set(short) < set(long_) and short[0] == long_[0] and short[-1] == long_[-1]:
            return "person", "the same first and last names, one with middle names"
        return None
    if a.acronym and b.acronym:
        if a.acronym == b.acronym:
            return "acronym", f"both declare the acronym {a.acronym}"
        return None  # different declared acronyms: different bodies
    if a.norm == b.norm:
        return "name", "the same name after normalisation"
    for x, y in ((a, b), (b, a)):
        if len(x.acronym) >= 3 and not y.acronym and initials(y.norm) == x.acronym:
            return "initials", f"{x.acronym} is the initials of '{y.norm}'"
    ca, cb = _content(a.norm), _content(b.norm)
    if ca and cb and len(ca.split()) >= 2 and len(cb.split()) >= 2:
        score = fuzz.token_sort_ratio(ca, cb)
        if score >= FUZZY_THRESHOLD:
            return "fuzzy", f"content words match with score {score:.0f}"
    return None


def _preferred(shown: Counter[str]) -> str:
    """The name to show: the most mentioned; ties: a full name declaring its acronym, then the longest
    name, then alphabetical order."""

    def rank(name: str) -> tuple[int, bool, int, str]:
        base, acronym = split_name(name)
        return (-shown[name], not (acronym and base != name), -len(base), name)

    return min(shown, key=rank)


def _pseudonym(entity_id: str) -> str:
    return "Person " + entity_id.split("_", 1)[-1][:6]


def _redactor(names: Iterable[str], pseudonym: str) -> Callable[[str], tuple[str, bool]]:
    variants = sorted(
        {v for n in names for v in (n, " ".join(w for w in n.split() if _fold(w) not in _TITLES)) if v}, key=len
    )
    patterns = [re.compile(r"(?<!\w)" + re.escape(v) + r"(?!\w)", re.IGNORECASE) for v in reversed(variants)]

    def redact(text: str) -> tuple[str, bool]:
        out = text
        for p in patterns:
            out = p.sub(pseudonym, out)
        return out, out != text

    return redact


def champions(records: Iterable[Any], *, undo: Iterable[str] = (), pseudonymise: bool = False) -> list[ChampionEntity]:
    """Resolve the champion records of ``records`` into entities (see the module docstring).

    Args:
        records: lines of ``OUT.jsonl`` or :class:`~insights.schema.InsightRecord` objects; only
            ``kind == "champion"`` is read, each ``insight_id`` once.
        undo: ``merge_id`` values of merges not to make.
        pseudonymise: replace person entities' names with stable pseudonyms.

    Returns:
        Entities sorted by documents (most first), then name, then ``entity_id``.
    """
    aliases = _aliases(records)
    skip = set(undo)
    union = _Union(len(aliases))
    edges: list[tuple[int, int, Merge]] = []
    blocks: dict[str, list[int]] = {}
    for i, a in enumerate(aliases):
        blocks.setdefault(a.block, []).append(i)
        if a.international:
            blocks.setdefault("\0international", []).append(i)
    done: set[tuple[int, int]] = set()
    for name in sorted(blocks):
        members = blocks[name]
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if (i, j) in done:
                    continue
                done.add((i, j))
                found = _edge(aliases[i], aliases[j])
                if found is None:
                    continue
                rule, reason = found
                merge_id = digest_id("mrg", [sorted([aliases[i].key, aliases[j].key]), rule])
                if merge_id in skip:
                    continue
                shown_a, shown_b = _preferred(aliases[i].shown), _preferred(aliases[j].shown)
                edges.append((i, j, Merge(merge_id=merge_id, a=shown_a, b=shown_b, rule=rule, reason=reason)))
                union.join(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(aliases)):
        groups.setdefault(union.find(i), []).append(i)
    merges_of: dict[int, list[Merge]] = {}
    for i, _, merge in edges:
        merges_of.setdefault(union.find(i), []).append(merge)
    entities = [_entity([aliases[i] for i in g], merges_of.get(root, [])) for root, g in groups.items()]
    if pseudonymise:
        entities = [_pseudonymised(e) if e.champion_type == "person" else e for e in entities]
    return sorted(entities, key=lambda e: (-e.n_documents, e.name.casefold(), e.entity_id))


def _entity(members: list[_Alias], merges: list[Merge]) -> ChampionEntity:
    recs = sorted((r for a in members for r in a.records), key=lambda r: (r["document_id"], r["insight_id"]))
    ids = sorted(r["insight_id"] for r in recs)
    shown: Counter[str] = Counter()
    docs_of: dict[str, set[str]] = {}
    for a in members:
        for r in a.records:
            n = " ".join(str(r["name"]).split())
            shown[n] += 1
            docs_of.setdefault(n, set()).add(str(r["document_id"]))
    name = _preferred(shown)
    acronyms = Counter(a.acronym for a in members if a.acronym)
    types = Counter(str(r.get("champion_type") or "") for r in recs)
    contributions = []
    for r in recs:
        ev = (r.get("evidence") or [{}])[0]
        contributions.append(
            Contribution(
                insight_id=r["insight_id"],
                document_id=str(r["document_id"]),
                country=str(r.get("country") or ""),
                name=" ".join(str(r["name"]).split()),
                contribution=str(r.get("contribution") or ""),
                statement=str(r.get("statement") or ""),
                quote=str(ev.get("quote") or ""),
                start=ev.get("start"),
                end=ev.get("end"),
            )  # fmt: skip
        )
    return ChampionEntity(
        entity_id=digest_id("chp", [CHAMPION_RECIPE, ids]),
        name=name,
        acronym=acronyms.most_common(1)[0][0] if acronyms else "",
        champion_type=sorted(types, key=lambda t: (-types[t], t))[0],
        aliases=[
            Alias(alias=n, mentions=shown[n], documents=sorted(docs_of[n]))
            for n in sorted(shown, key=lambda n: (-shown[n], n))
        ],
        insight_ids=ids,
        n_mentions=len(recs),
        n_documents=len({r["document_id"] for r in recs}),
        n_countries=len({str(r.get("country") or "") for r in recs} - {""}),
        documents=sorted({str(r["document_id"]) for r in recs}),
        countries=_count(str(r.get("country") or "") for r in recs),
        sectors=_count(str(r.get("sector") or "") for r in recs),
        affiliations=_count(" ".join(str(r.get("affiliation") or "").split()) for r in recs),
        contributions=contributions,
        merges=sorted(merges, key=lambda m: m.merge_id),
    )


def _count(values: Iterable[str]) -> list[Count]:
    tally = Counter(v for v in values if v)
    return [Count(value=v, count=c) for v, c in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))]


def _pseudonymised(entity: ChampionEntity) -> ChampionEntity:
    pseudonym = _pseudonym(entity.entity_id)
    names = [a.alias for a in entity.aliases]
    redact = _redactor(names, pseudonym)
    contributions = []
    for c in entity.contributions:
        fields = {k: redact(getattr(c, k)) for k in ("contribution", "statement", "quote")}
        contributions.append(
            c.model_copy(
                update={
                    "name": pseudonym,
                    **{k: v[0] for k, v in fields.items()},
                    "redacted": any(v[1] for v in fields.values()) or c.redacted,
                }
            )
        )
    return entity.model_copy(
        update={
            "name": pseudonym,
            "aliases": [a.model_copy(update={"alias": f"{pseudonym} ({i + 1})"}) for i, a in enumerate(entity.aliases)],
            "contributions": contributions,
            "merges": [m.model_copy(update={"a": pseudonym, "b": pseudonym}) for m in entity.merges],
            "pseudonymised": True,
        }
    )


def person_redactor(entities: Iterable[ChampionEntity], records: Iterable[Any]) -> Callable[[str], tuple[str, bool]]:
    """A function replacing the names of every person champion in ``records`` with the pseudonym of its
    entity in ``entities`` (for statements and quotes of other outputs, e.g. themes)."""
    by_id = {r["insight_id"]: r for r in (dict(as_dict(x), insight_id=record_id(as_dict(x))) for x in records)}
    redactors = []
    for e in entities:
        if e.champion_type != "person":
            continue
        names = {" ".join(str(by_id[i].get("name") or "").split()) for i in e.insight_ids if i in by_id}
        redactors.append(_redactor(names - {""}, _pseudonym(e.entity_id)))

    def redact(text: str) -> tuple[str, bool]:
        changed = False
        for r in redactors:
            text, hit = r(text)
            changed = changed or hit
        return text, changed

    return redact


def pseudonymise_themes(found: Iterable[Any], entities: Iterable[ChampionEntity], records: Iterable[Any]) -> list[Any]:
    """``found`` (:class:`~insights.themes.Theme` objects) with person champions' names replaced by their
    pseudonyms in representatives' statements and quotes, and in terms (a term with a word of a person's
    name becomes the pseudonym), the label and the description."""
    records = list(records)
    entities = list(entities)
    redact = person_redactor(entities, records)
    by_id = {record_id(as_dict(r)): as_dict(r) for r in records}
    word_owner: dict[str, str] = {}
    for e in entities:
        if e.champion_type == "person":
            for iid in e.insight_ids:
                for w in _fold(str(by_id.get(iid, {}).get("name") or "")).split():
                    if len(w) >= 3 and w not in _TITLES:
                        word_owner[w] = _pseudonym(e.entity_id)
    out = []
    for theme in found:
        reps = []
        for r in theme.representatives:
            (statement, a), (quote, b) = redact(r.statement), redact(r.quote)
            reps.append(r.model_copy(update={"statement": statement, "quote": quote, "redacted": r.redacted or a or b}))
        label, description, terms = redact(theme.label)[0], redact(theme.description)[0], []
        for t in theme.terms:
            owner = next((word_owner[w] for w in _fold(t.value).split() if w in word_owner), "")
            if owner:
                label = re.sub(re.escape(t.value), owner, label, flags=re.IGNORECASE)
                description = description.replace(f"“{t.value}”", f"“{owner}”")
            terms.append(t.model_copy(update={"value": owner or t.value}))
        update = {"label": label, "description": description, "terms": terms, "representatives": reps}
        out.append(theme.model_copy(update=update))
    return out
