"""Champions resolved across documents (issue 11): merges with reasons, blocks by country, care with people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import insights
from insights import cli
from insights.champions import (
    ChampionEntity,
    name_key,
    person_redactor,
    pseudonymise_themes,
    split_name,
)
from insights.ids import digest_id
from insights.theme_tables import champion_tables
from insights.themes_eval import LABELS, PairScore, annotated_records, mention_record, read_labels, score_champions

_N = iter(range(1, 10_000))


def champ(
    name: str,
    country: str = "Vietnam",
    doc: str = "",
    ctype: str = "organization",
    sector: str = "government",
    contribution: str = "",
) -> dict[str, Any]:
    n = next(_N)
    quote = f"{name} led the work."
    return {
        "document_id": doc or f"doc{n}", "insight_id": f"ins_{n:020x}", "kind": "champion", "name": name,
        "champion_type": ctype, "sector": sector, "affiliation": "", "country": country, "year": 2022,
        "contribution": contribution or f"{name} led the work.", "statement": f"{name} championed the lab.",
        "evidence": [{"quote": quote, "start": 0, "end": len(quote), "match": "exact", "section": ""}],
    }  # fmt: skip


def entity_of(entities: list[ChampionEntity], record: dict[str, Any]) -> ChampionEntity:
    (found,) = [e for e in entities if record["insight_id"] in e.insight_ids]
    return found


def test_the_same_organisation_written_three_ways_is_one_entity_with_its_reasons() -> None:
    nic, full, possessive = (
        champ("NIC"),
        champ("National Innovation Center (NIC)"),
        champ("Viet Nam's National Innovation Centre"),
    )
    natec = champ("NATEC")
    entities = insights.champions([nic, full, possessive, natec])
    entity = entity_of(entities, nic)
    assert entity.insight_ids == sorted(r["insight_id"] for r in (nic, full, possessive))
    assert entity.acronym == "NIC" and entity.n_documents == 3 and entity.n_mentions == 3
    assert {a.alias for a in entity.aliases} == {
        "NIC",
        "National Innovation Center (NIC)",
        "Viet Nam's National Innovation Centre",
    }
    # "Viet Nam's National Innovation Centre" (in Viet Nam) and "National Innovation Center (NIC)" normalise
    # to one alias; the bare acronym joins them by the acronym rule.
    assert [m.rule for m in entity.merges] == ["acronym"]
    assert all(m.reason and m.merge_id.startswith("mrg_") for m in entity.merges)
    assert entity.name == "National Innovation Center (NIC)"  # ties: the full name declaring its acronym
    assert [c.value for c in entity.countries] == ["Vietnam"] and len(entity.contributions) == 3
    assert entity.entity_id == digest_id("chp", ["champion/1", entity.insight_ids])
    assert entity_of(entities, natec).n_mentions == 1 and len(entities) == 2


def test_names_normalise_spelling_articles_acronyms_and_titles() -> None:
    assert split_name("National Innovation Center (Ministry of Planning and Investment)") == (
        "National Innovation Center",
        "",
    )
    assert split_name("Consejo Nacional de Ciencia y Tecnología (CONACYT)")[1] == "CONACYT"
    assert split_name("MoEPP") == ("MoEPP", "MOEPP")
    assert name_key("The Agirre Lehendakaria Centre") == name_key("Agirre Lehendakaria Center")
    assert name_key("International Labour Organisation") == "international labor organization"
    assert name_key("Viet Nam's National Innovation Centre", country="Viet Nam") == "national innovation center"
    assert name_key("Hon. Persis NAMUGANZA", person=True) == name_key("Namuganza Persis", person=True)


def test_merges_stay_inside_a_country_except_for_international_organisations() -> None:
    moj_a, moj_b, moj_c = (
        champ("Ministry of Justice", "Guinea-Bissau"),
        champ("Ministry of Justice", "Guinea-Bissau"),
        champ("Ministry of Justice", "Eswatini"),
    )
    ilo_a = champ("International Labour Organization (ILO)", "Paraguay", sector="international")
    ilo_b = champ("International Labor Organization", "Jordan", sector="international")
    nic_elsewhere = champ("NIC", "Kenya")
    entities = insights.champions([moj_a, moj_b, moj_c, ilo_a, ilo_b, nic_elsewhere, champ("NIC")])
    assert entity_of(entities, moj_a) == entity_of(entities, moj_b) != entity_of(entities, moj_c)
    ilo = entity_of(entities, ilo_a)
    assert ilo == entity_of(entities, ilo_b) and ilo.n_countries == 2
    assert [m.rule for m in ilo.merges] == ["name"]
    assert entity_of(entities, nic_elsewhere).n_mentions == 1


def test_different_declared_acronyms_never_merge_and_word_order_does() -> None:
    scep = champ("Secretariat of Executive Coordination of the Presidency (SCEP)", "Guatemala")
    scep2 = champ("Executive Coordination Secretariat of the Presidency", "Guatemala")
    seg = champ("General Planing Secretariat of the Presidency (SEGEPLAN)", "Guatemala")
    spp = champ("Private Secretariat of the Presidency (SPP)", "Guatemala")
    unima = champ("University of Malawi", "Malawi", sector="academia")
    team = champ("Physics Department team of University of Malawi", "Malawi", ctype="team", sector="academia")
    entities = insights.champions([scep, scep2, seg, spp, unima, team])
    assert entity_of(entities, scep) == entity_of(entities, scep2)
    assert entity_of(entities, scep).merges[0].rule == "fuzzy"
    assert len({entity_of(entities, r).entity_id for r in (scep, seg, spp)}) == 3
    assert entity_of(entities, unima) != entity_of(entities, team)


def test_people_are_merged_with_care() -> None:
    a = champ("KWIZERA Ildephonse", "Rwanda", ctype="person", sector="community")
    b = champ("Ildephonse Kwizera", "Rwanda", ctype="person", sector="community")
    full = champ("Hon. Persis Princess Namuganza", "Uganda", ctype="person")
    short = champ("Hon. Persis Namuganza", "Uganda", ctype="person")
    other = champ("Ms. Dorothy Kisaka", "Uganda", ctype="person")
    given = champ("Mr. Hieu", "Vietnam", ctype="person")
    named = champ("Mr. Tu Minh Hieu", "Vietnam", ctype="person")
    org = champ("Kwizera Ildephonse", "Rwanda", ctype="organization")
    elsewhere = champ("Persis Namuganza", "Kenya", ctype="person")
    entities = insights.champions([a, b, full, short, other, given, named, org, elsewhere])
    assert entity_of(entities, a) == entity_of(entities, b) != entity_of(entities, org)
    assert entity_of(entities, full) == entity_of(entities, short) != entity_of(entities, other)
    assert entity_of(entities, given) != entity_of(entities, named)  # one word is not enough
    assert entity_of(entities, elsewhere).n_mentions == 1  # not across countries
    assert {m.rule for m in entity_of(entities, full).merges} == {"person"}


def test_a_merge_can_be_undone_by_its_id_and_the_result_does_not_depend_on_order() -> None:
    records = [champ("NIC"), champ("National Innovation Center (NIC)"), champ("National Innovations Center")]
    entities = insights.champions(records)
    (entity,) = entities
    assert sorted(m.rule for m in entity.merges) == ["acronym", "initials", "initials"]
    assert insights.champions(list(reversed(records))) == entities
    merge = next(m for m in entity.merges if {m.a, m.b} == {"NIC", "National Innovation Center (NIC)"})
    still = insights.champions(records, undo=[merge.merge_id])
    assert len(still) == 1 and merge.merge_id not in {m.merge_id for m in still[0].merges}  # another edge joins
    apart = insights.champions(records, undo=[m.merge_id for m in entity.merges])
    assert len(apart) == 3 and all(not e.merges for e in apart)


def test_pseudonymised_people_leave_no_name_in_the_output() -> None:
    person = champ("Ms. Dorothy Kisaka", "Uganda", ctype="person", contribution="Ms. Dorothy Kisaka opened the hub.")
    again = champ("Dorothy Kisaka", "Uganda", ctype="person")
    org = champ("Kampala Capital City Authority (KCCA)", "Uganda")
    entities = insights.champions([person, again, org], pseudonymise=True)
    plain = insights.champions([person, again, org])
    dumped = json.dumps([e.model_dump() for e in entities])
    assert "Kisaka" not in dumped and "Dorothy" not in dumped and "Kampala Capital City Authority" in dumped
    people = [e for e in entities if e.champion_type == "person"]
    assert len(people) == 1 and people[0].pseudonymised and people[0].name.startswith("Person ")
    assert people[0].entity_id == next(e.entity_id for e in plain if e.champion_type == "person")
    assert insights.champions([org, again, person], pseudonymise=True) == entities  # stable pseudonyms
    contribution = next(c for c in people[0].contributions if c.insight_id == person["insight_id"])
    assert contribution.redacted and contribution.contribution == f"{people[0].name} opened the hub."
    assert (contribution.start, contribution.end) == (0, len(person["evidence"][0]["quote"]))
    redact = person_redactor(plain, [person, again, org])
    assert redact("Thanks to Dorothy Kisaka and KCCA.") == (f"Thanks to {people[0].name} and KCCA.", True)


def test_pseudonymised_themes_carry_no_person_name() -> None:
    pytest.importorskip("scipy")
    person = champ("Tu Minh Hieu", "Vietnam", ctype="person")

    def barrier(doc: str, n: int) -> dict[str, Any]:
        s = f"Tu Minh Hieu says officials are paid too little to innovate ({n})."
        return {
            "document_id": doc, "insight_id": f"ins_{9000 + n:020x}", "kind": "barrier", "statement": s,
            "category": "incentives_and_pay", "level": "environmental", "country": "Vietnam", "year": 2022,
            "type": "blog", "evidence": [{"quote": s, "start": 0, "end": len(s), "match": "exact", "section": ""}],
        }  # fmt: skip

    records = [person, barrier("a", 1), barrier("b", 2)]
    found = list(insights.themes(records))
    assert found and "Hieu" in json.dumps([t.model_dump() for t in found])
    redacted = pseudonymise_themes(found, insights.champions(records), records)
    assert "Hieu" not in json.dumps([t.model_dump() for t in redacted])
    assert all(r.redacted for t in redacted for r in t.representatives)


def test_tables_have_one_row_per_entity_and_alias() -> None:
    records = [champ("NIC"), champ("National Innovation Center (NIC)"), champ("NATEC")]
    entities = insights.champions(records)
    tables = champion_tables(entities)
    assert [r["entity_id"] for r in tables["champions"]] == [e.entity_id for e in entities]
    assert len(tables["champion_aliases"]) == sum(len(e.aliases) for e in entities) == 3
    assert {r["alias"] for r in tables["champion_aliases"]} == {"NIC", "National Innovation Center (NIC)", "NATEC"}


def test_the_labelled_alias_set_names_real_mentions_and_scores_as_printed(capsys: pytest.CaptureFixture[str]) -> None:
    pairs = read_labels(LABELS / "aliases.jsonl")
    assert len(pairs) >= 40 and {p["same"] for p in pairs} == {True, False}
    documents = {d.id: d.text for d in insights.load_corpus(["seeds", "evals/corpus/documents"])}
    for pair in pairs:
        for m in (pair["a"], pair["b"]):
            assert m["name"] and m["country"] and m["document_id"] and mention_record(m)["name"] == m["name"]
            if m["document_id"] in documents:  # the others are in the shared corpus, beside the repository
                base = split_name(m["name"])[0]
                assert base.split()[-1].strip(".").casefold() in documents[m["document_id"]].casefold()
    score = score_champions(annotated_records(), pairs)
    assert score.same == sum(p["same"] for p in pairs) and score.different == len(pairs) - score.same
    assert 0 <= score.false_positive <= score.different and 0 <= score.true_positive <= score.same
    toy = PairScore()
    for same, predicted in [(True, True), (True, False), (False, True), (False, False)]:
        toy.add(same, predicted)
    assert (toy.precision, toy.recall) == (0.5, 0.5)


def test_cli_writes_champions_beside_the_themes_with_undo_and_pseudonyms(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    out = tmp_path / "out.jsonl"
    records = [
        champ("NIC"),
        champ("National Innovation Center (NIC)"),
        champ("Dorothy Kisaka", "Uganda", ctype="person"),
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli.main(["themes", str(out), "-o", str(tmp_path / "t.jsonl"), "--pseudonymise-persons"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "t.champions.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and "Kisaka" not in (tmp_path / "t.champions.jsonl").read_text()
    merge = next(m["merge_id"] for e in lines for m in e["merges"])
    assert cli.main(["themes", str(out), "-o", str(tmp_path / "u.jsonl"), "--undo-merge", merge]) == 0
    assert len((tmp_path / "u.champions.jsonl").read_text().splitlines()) == 3
