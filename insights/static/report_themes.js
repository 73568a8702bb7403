/* The report's Themes and Champions pages (insights.report_themes), inlined before report.js when the report
   has a themes file, and registered with its pages: #themes, #theme/ID, #champions (each with ?country=,
   year=, type=, and kind= for themes). Drawn from the index: every count is recomputed here from the
   members that match the filters. Every string from the data is inserted as text, never as HTML. */
"use strict";
(window.INSIGHTS_PAGES = window.INSIGHTS_PAGES || []).push((R) => {
  const { $, h, label, badge, hashFor, NONE, PAGE_SIZE } = R;
  const KEYS = ["country", "year", "type"]; // of the members' documents
  const VALUE = {
    country: (doc) => doc.country || NONE,
    year: (doc) => (doc.year === null || doc.year === undefined ? NONE : String(doc.year)),
    type: (doc) => doc.type || NONE,
  };
  let THEME_AT = null; // theme id -> position

  const docOf = (pos) => R.index.docs[R.index.insights[pos].d];
  const matches = (f) => (pos) => KEYS.every((k) => !f[k] || VALUE[k](docOf(pos)) === f[k]);

  function filtersOf(params, keys) {
    const f = {};
    for (const key of keys) if (params.get(key)) f[key] = params.get(key);
    return f;
  }

  /* [[value, count], ...]: most first, then by value (as the themes file tallies them). */
  function tally(values) {
    const counts = new Map();
    for (const v of values) if (v !== "" && v !== null && v !== undefined) counts.set(v, (counts.get(v) || 0) + 1);
    return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  function stats(members) {
    const ins = members.map((pos) => R.index.insights[pos]);
    const docs = ins.map((i) => R.index.docs[i.d]);
    return {
      members: members.length,
      documents: new Set(ins.map((i) => i.d)).size,
      countries: tally(docs.map((d) => d.country)),
      years: [...new Set(docs.map((d) => d.year).filter((y) => y !== null))].sort((a, b) => a - b),
      types: tally(docs.map((d) => d.type)),
      category: (tally(ins.map((i) => i.c))[0] || [""])[0],
      level: (tally(ins.map((i) => i.l))[0] || [""])[0],
    };
  }

  const span = (years) => (years.length > 1 ? `${years[0]}–${years[years.length - 1]}` : years.join(""));
  const listed = (counts, n = 5) =>
    counts.slice(0, n).map(([v, c]) => `${v} (${c})`).join(", ") + (counts.length > n ? ", …" : "");
  const plural = (n, one, many = one + "s") => `${n} ${n === 1 ? one : many}`;

  function show(page, tab) {
    R.showPage(page);
    for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === tab);
  }

  function pageOf(params, total) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    return Math.min(pages, Math.max(1, parseInt(params.get("page") || "1", 10) || 1));
  }

  function syncForm(form, f) {
    for (const field of form.querySelectorAll("select")) {
      const value = f[field.name] || "";
      if (value && ![...field.options].some((o) => o.value === value)) field.add(new Option(value, value));
      if (field.value !== value) field.value = value;
    }
  }

  function wire(form, page) {
    const hash = () => {
      const params = {};
      for (const [key, value] of new FormData(form)) if (value) params[key] = String(value);
      return hashFor(page, "", params);
    };
    form.addEventListener("change", () => R.go(hash(), false));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      R.go(hash(), false);
    });
    form.addEventListener("reset", () => setTimeout(() => R.go("#" + page, false)));
  }

  // ------------------------------------------------------------------------------------------ themes
  function themeItem(t, members, s, f) {
    const of = members.length < t.m.length ? ` of ${t.m.length}` : "";
    const facts = [plural(s.documents, "document"), plural(s.countries.length, "country", "countries"),
      span(s.years), `${s.members}${of} members`].filter(Boolean);
    return h("li", { class: "item theme", "data-theme": t.id, "data-members": s.members, "data-documents": s.documents,
      "data-countries": s.countries.length },
    h("div", { class: "tags" }, badge(t.k), s.category ? h("span", { class: "tag" }, label(s.category)) : null,
      s.level ? h("span", { class: "tag" }, s.level) : null),
    h("a", { class: "statement", href: hashFor("theme", t.id, f) }, t.label || "(no label)"),
    h("div", { class: "meta" }, facts.join(" · "), s.countries.length ? " · " + listed(s.countries) : ""));
  }

  function showThemes(params) {
    show("themes", "themes");
    const f = filtersOf(params, ["kind", ...KEYS]);
    syncForm($("#theme-filters"), f);
    const test = matches(f);
    const rows = [];
    R.index.themes.forEach((t, i) => {
      if (f.kind && t.k !== f.kind) return;
      const members = t.m.filter(test);
      if (members.length) rows.push({ i, members, s: stats(members) });
    });
    rows.sort((a, b) => b.s.documents - a.s.documents || b.s.members - a.s.members || a.i - b.i);
    const page = pageOf(params, rows.length);
    $("#theme-count").textContent = String(rows.length);
    $("#theme-count-label").textContent = `of ${R.index.themes.length} themes`;
    const list = $("#theme-list");
    list.start = (page - 1) * PAGE_SIZE + 1;
    list.replaceChildren(...rows.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE)
      .map((r) => themeItem(R.index.themes[r.i], r.members, r.s, f)));
    if (!rows.length) list.append(h("li", { class: "none" }, "No theme has members matching these filters."));
    R.pager($("#theme-pager"), rows.length, page, (p) => hashFor("themes", "", { ...f, page: p }));
  }

  /* The first evidence passage of an insight: the record's quote when the index keeps it, else the
     located passage in the document's text (the same one its document view highlights). */
  async function passage(pos) {
    const ins = R.index.insights[pos];
    const e = ins.e[0];
    if (!e) return "";
    if (e[5] !== null && e[5] !== undefined) return e[5];
    const payload = R.index.docs[ins.d].status === "ok" ? await R.docText(ins.d) : null;
    const mark = payload ? payload.marks.find((m) => m[3] === pos && m[4] === 0) : null;
    return mark ? payload.parts[mark[0]][2].slice(mark[1], mark[2]) : "";
  }

  async function memberItem(pos, representative) {
    const ins = R.index.insights[pos];
    const doc = R.index.docs[ins.d];
    const where = [doc.country, doc.year, doc.type].filter((v) => v !== null && v !== "");
    const quote = await passage(pos);
    return h("li", { class: "item member", "data-insight": ins.id },
      h("div", { class: "tags" }, badge(ins.k), representative ? h("span", { class: "tag rep" }, "representative") : null),
      h("a", { class: "statement", href: R.insightHref(pos) }, ins.s || "(no statement)"),
      ins.k === "failed_experiment" && ins.f.why_it_failed ? h("div", { class: "why" }, "why it failed: " + ins.f.why_it_failed) : null,
      quote ? h("blockquote", { class: "quote" }, quote) : null,
      h("div", { class: "meta" }, h("a", { href: R.docHref(ins.d), class: "doc" }, doc.title || doc.id),
        where.length ? " · " + where.join(" · ") : ""));
  }

  function themeHead(t, all, f, shown) {
    const rows = [["members", all.members], ["documents", all.documents], ["countries", listed(all.countries, 50)],
      ["years", all.years.join(", ")], ["document types", listed(all.types, 50)], ["category", label(all.category)],
      ["level", all.level], ["shared terms", t.terms.join(", ")],
      ["label", t.src === "offline" ? "offline: terms the members share" : t.src],
      ["least similarity of two members", t.sim], ["theme id", t.id]].filter(([, v]) => v !== "" && v !== null);
    const filtered = Object.entries(f).map(([k, v]) => `${k} ${v}`).join(", ");
    return [
      h("h2", { id: "theme-title", "data-theme": t.id }, t.label || "(no label)"),
      h("div", { class: "tags" }, badge(t.k)),
      t.desc ? h("p", { class: "theme-desc" }, t.desc) : null,
      h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
      filtered ? h("p", { class: "note" }, `Members whose document matches ${filtered}: ${shown} of ${all.members}. `,
        h("a", { href: hashFor("theme", t.id) }, "Show all members")) : null,
    ];
  }

  async function showTheme(id, params) {
    show("theme", "themes");
    if (THEME_AT === null) THEME_AT = new Map(R.index.themes.map((t, i) => [t.id, i]));
    const list = $("#member-list");
    const t = R.index.themes[THEME_AT.get(id)];
    if (!t) {
      $("#theme-head").replaceChildren(h("p", { class: "warning" }, "No such theme in this report."));
      list.replaceChildren();
      $("#member-count").textContent = "0";
      $("#member-pager").replaceChildren();
      return;
    }
    const f = filtersOf(params, KEYS);
    const reps = new Set(t.r);
    const members = t.m.filter(matches(f)).sort((a, b) => reps.has(b) - reps.has(a)); // stable: theme order
    $("#theme-head").replaceChildren(...themeHead(t, stats(t.m), f, members.length).filter(Boolean));
    const page = pageOf(params, members.length);
    $("#member-count").textContent = String(members.length);
    $("#member-count-label").textContent = members.length === t.m.length ? "members" : `of ${t.m.length} members`;
    const items = await Promise.all(members.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE)
      .map((pos) => memberItem(pos, reps.has(pos))));
    list.start = (page - 1) * PAGE_SIZE + 1;
    list.replaceChildren(...items);
    R.pager($("#member-pager"), members.length, page, (p) => hashFor("theme", id, { ...f, page: p }));
    window.scrollTo(0, 0);
  }

  // --------------------------------------------------------------------------------------- champions
  function mentionItem(pos) {
    const ins = R.index.insights[pos];
    const doc = R.index.docs[ins.d];
    const said = [ins.f.name, ins.f.contribution || ins.s].filter(Boolean).join(": ");
    return h("li", { "data-insight": ins.id }, h("a", { href: R.insightHref(pos) }, said),
      " — ", doc.title || doc.id, doc.country ? ` (${doc.country})` : "");
  }

  function championItem(e, members) {
    const s = stats(members);
    const facts = [plural(s.members, "mention"), plural(s.documents, "document"), listed(s.countries, 10)];
    const name = e.acr && !e.name.includes(e.acr) ? `${e.name} (${e.acr})` : e.name;
    return h("li", { class: "item champion", "data-entity": e.id, "data-mentions": s.members, "data-documents": s.documents },
      h("div", { class: "tags" }, badge("champion"), h("span", { class: "tag" }, e.t),
        e.ps ? h("span", { class: "tag" }, "pseudonymised") : null),
      h("div", { class: "name" }, name),
      h("div", { class: "meta" }, facts.filter(Boolean).join(" · ")),
      e.a.length > 1 ? h("div", { class: "aliases" }, h("b", {}, "written as: "),
        e.a.map(([alias, n, docs]) => `${alias} (${plural(n, "mention")}, ${plural(docs.length, "document")})`).join("; ")) : null,
      e.mg.length ? h("div", { class: "merges" }, h("b", {}, "merged: "), e.mg.map(([rule, why]) => `${rule}: ${why}`).join("; ")) : null,
      h("details", {}, h("summary", {}, `mentions (${members.length})`), h("ol", { class: "mini" }, members.map(mentionItem))));
  }

  function showChampions(params) {
    show("champions", "champions");
    const f = filtersOf(params, KEYS);
    syncForm($("#champion-filters"), f);
    const test = matches(f);
    const rows = [];
    R.index.champions.forEach((e, i) => {
      const members = e.m.filter(test);
      if (members.length) rows.push({ i, members, documents: new Set(members.map((p) => R.index.insights[p].d)).size });
    });
    rows.sort((a, b) => b.documents - a.documents || a.i - b.i);
    const page = pageOf(params, rows.length);
    $("#champion-count").textContent = String(rows.length);
    $("#champion-count-label").textContent = `of ${R.index.champions.length} champions`;
    const list = $("#champion-list");
    list.start = (page - 1) * PAGE_SIZE + 1;
    list.replaceChildren(...rows.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE)
      .map((r) => championItem(R.index.champions[r.i], r.members)));
    if (!rows.length) list.append(h("li", { class: "none" }, "No champion is mentioned in documents matching these filters."));
    R.pager($("#champion-pager"), rows.length, page, (p) => hashFor("champions", "", { ...f, page: p }));
  }

  R.PAGES.themes = (arg, params) => showThemes(params);
  R.PAGES.theme = (arg, params) => showTheme(arg, params);
  wire($("#theme-filters"), "themes");
  if ($("#page-champions")) {
    R.PAGES.champions = (arg, params) => showChampions(params);
    wire($("#champion-filters"), "champions");
  }
});
