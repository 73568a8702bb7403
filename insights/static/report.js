/* The evidence report's script (insights.report): plain ES2020, no library, no network. It uses the
   shared highlighting of static/highlight.js (inlined before it).
   The data formats are described in the docstring of insights/report.py. Every string from the data is
   inserted as text (text nodes, attributes), never parsed as HTML. */
"use strict";
(() => {
  const PAGE_SIZE = 50;
  const FILTERS = ["kind", "category", "level", "country", "year", "type", "sdg"];
  const NONE = "(none)";
  const $ = (selector, root = document) => root.querySelector(selector);
  const label = window.InsightsText.label;

  let INDEX = null; // the decoded index
  let BY_ID = null; // insight id -> position
  let BY_DOC = null; // document id -> position
  let OF_DOC = null; // document position -> [insight positions]
  let TEXT_LINES = null; // one packed text a document, split on first use
  let HAY = null; // lower-case search text of each insight, built on first search
  const texts = new Map(); // document position -> Promise of its unpacked text

  const { h, unpack, renderParts } = window.InsightsText; // static/highlight.js, inlined before this file
  const insightOf = (i) => INDEX.insights[i];

  function docText(d) {
    if (!texts.has(d)) {
      if (TEXT_LINES === null) TEXT_LINES = $("#insights-texts").textContent.split("\n");
      const line = TEXT_LINES[d] || "";
      texts.set(d, line ? unpack(line) : Promise.resolve(null));
    }
    return texts.get(d);
  }

  const READY = unpack($("#insights-index").textContent).then((index) => {
    INDEX = index;
    BY_ID = new Map(index.insights.map((ins, i) => [ins.id, i]));
    BY_DOC = new Map(index.docs.map((doc, i) => [doc.id, i]));
    OF_DOC = index.docs.map(() => []);
    index.insights.forEach((ins, i) => OF_DOC[ins.d].push(i));
    performance.mark("insights-index-ready");
  });

  // ------------------------------------------------------------------------------------------ routing
  function hashFor(name, arg, params) {
    const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v !== undefined));
    const qs = query.toString();
    return "#" + name + (arg ? "/" + encodeURIComponent(arg) : "") + (qs ? "?" + qs : "");
  }
  const docHref = (d) => hashFor("doc", INDEX.docs[d].id);
  const insightHref = (i) => hashFor("insight", INDEX.insights[i].id);

  function parseHash() {
    const raw = location.hash.replace(/^#/, "");
    const q = raw.indexOf("?");
    const path = q < 0 ? raw : raw.slice(0, q);
    const slash = path.indexOf("/");
    return {
      name: (slash < 0 ? path : path.slice(0, slash)) || "overview",
      arg: slash < 0 ? "" : decodeURIComponent(path.slice(slash + 1)),
      params: new URLSearchParams(q < 0 ? "" : raw.slice(q + 1)),
    };
  }

  const PAGES = {
    overview: () => showPage("overview"),
    insights: (arg, params) => showInsights(params),
    rejected: (arg, params) => showRejected(params),
    doc: (arg) => showDoc(BY_DOC.get(arg), null),
    insight: (arg) => {
      const i = BY_ID.get(arg);
      return i === undefined ? showDoc(undefined, null) : showDoc(INDEX.insights[i].d, i);
    },
  };

  async function route() {
    const { name, arg, params } = parseHash();
    const page = Object.hasOwn(PAGES, name) ? name : "overview";
    if (page !== "overview") await READY;
    await PAGES[page](arg, params);
    document.body.dataset.route = location.hash; // tests wait for this
  }

  function go(hash, replace) {
    if (replace) {
      history.replaceState(null, "", hash);
      route();
    } else if (location.hash === hash) route();
    else location.hash = hash;
  }

  function showPage(name) {
    for (const page of document.querySelectorAll("main > .page")) page.hidden = page.id !== "page-" + name;
    for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === name);
  }

  // ---------------------------------------------------------------------------------------- insights
  function filtersOf(params) {
    const f = {};
    for (const key of [...FILTERS, "q"]) if (params.get(key)) f[key] = params.get(key);
    return f;
  }

  function haystack(i) {
    if (HAY === null) HAY = new Array(INDEX.insights.length);
    if (HAY[i] === undefined) {
      const ins = INDEX.insights[i];
      HAY[i] = [ins.s, ins.c, ...Object.values(ins.f), INDEX.docs[ins.d].title].join("\n").toLowerCase();
    }
    return HAY[i];
  }

  /* The insight filter: every filter given must match; every word of q must occur in the statement,
     the category, the other fields or the document's title (case-insensitive). */
  function matcher(f) {
    const words = (f.q || "").toLowerCase().split(/\s+/).filter(Boolean);
    return (ins, i) => {
      const doc = INDEX.docs[ins.d];
      if (f.kind && ins.k !== f.kind) return false;
      if (f.category && ins.c !== f.category) return false;
      if (f.level && ins.l !== f.level) return false;
      if (f.country && (doc.country || NONE) !== f.country) return false;
      if (f.year && (doc.year === null ? NONE : String(doc.year)) !== f.year) return false;
      if (f.type && (doc.type || NONE) !== f.type) return false;
      if (f.sdg && !(doc.sdgs.length ? doc.sdgs.includes(f.sdg) : f.sdg === NONE)) return false;
      if (words.length) {
        const hay = haystack(i);
        return words.every((w) => hay.includes(w));
      }
      return true;
    };
  }

  function syncForm(f) {
    const form = $("#filters");
    for (const key of [...FILTERS, "q"]) {
      const field = form.elements[key];
      const value = f[key] || "";
      if (field.tagName === "SELECT" && value && ![...field.options].some((o) => o.value === value)) {
        field.add(new Option(value, value));
      }
      if (field.value !== value) field.value = value;
    }
  }

  const badge = (kind) => h("span", { class: "badge k-" + kind }, label(kind));

  function insightItem(i) {
    const ins = INDEX.insights[i];
    const doc = INDEX.docs[ins.d];
    const where = [doc.country, doc.year, doc.type].filter((v) => v !== null && v !== "");
    return h(
      "li",
      { class: "item", "data-insight": ins.id },
      h("div", { class: "tags" }, badge(ins.k), ins.c ? h("span", { class: "tag" }, label(ins.c)) : null,
        ins.l ? h("span", { class: "tag" }, ins.l) : null),
      h("a", { class: "statement", href: insightHref(i) }, ins.s || ins.f.name || "(no statement)"),
      h("div", { class: "meta" }, h("a", { href: docHref(ins.d), class: "doc" }, doc.title || doc.id),
        where.length ? " · " + where.join(" · ") : ""),
    );
  }

  function pager(nav, total, page, hrefFor) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    nav.replaceChildren(
      page > 1 ? h("a", { href: hrefFor(page - 1), class: "prev" }, "← previous") : h("span", {}, "← previous"),
      h("span", { class: "where" }, `page ${page} of ${pages}`),
      page < pages ? h("a", { href: hrefFor(page + 1), class: "next" }, "next →") : h("span", {}, "next →"),
    );
  }

  function showInsights(params) {
    showPage("insights");
    const f = filtersOf(params);
    syncForm(f);
    const test = matcher(f);
    const hits = [];
    INDEX.insights.forEach((ins, i) => {
      if (test(ins, i)) hits.push(i);
    });
    const pages = Math.max(1, Math.ceil(hits.length / PAGE_SIZE));
    const page = Math.min(pages, Math.max(1, parseInt(params.get("page") || "1", 10) || 1));
    $("#count").textContent = String(hits.length);
    $("#count-label").textContent = `of ${INDEX.insights.length} insights`;
    const list = $("#insight-list");
    list.start = (page - 1) * PAGE_SIZE + 1;
    list.replaceChildren(...hits.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE).map(insightItem));
    if (!hits.length) list.append(h("li", { class: "none" }, "No insight matches these filters."));
    pager($("#insight-pager"), hits.length, page, (p) => hashFor("insights", "", { ...f, page: p }));
  }

  function formHash() {
    const data = new FormData($("#filters"));
    const params = {};
    for (const [key, value] of data) if (String(value).trim()) params[key] = String(value).trim();
    return hashFor("insights", "", params);
  }

  let typing = 0;
  const form = $("#filters");
  form.addEventListener("change", (e) => {
    if (e.target.name !== "q") go(formHash(), false);
  });
  form.addEventListener("input", (e) => {
    if (e.target.name !== "q") return;
    clearTimeout(typing);
    typing = setTimeout(() => go(formHash(), true), 200);
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go(formHash(), false);
  });
  form.addEventListener("reset", () => setTimeout(() => go("#insights", false)));

  // ---------------------------------------------------------------------------------------- documents
  function renderText(doc, payload) {
    if (!payload) {
      const why = doc.status === "changed"
        ? "This document changed after the run (its content hash differs), so its text is not shown."
        : "This document's text was not found (give its path to insights report), so only the quotes are shown.";
      return [h("p", { class: "warning" }, why)];
    }
    return renderParts(payload, doc.chars, insightOf);
  }

  function renderHead(doc) {
    const facts = [["id", doc.id], ["type", doc.type], ["year", doc.year], ["country", doc.country],
      ["SDGs", doc.sdgs.join("; ")], ["file", doc.path]].filter(([, v]) => v !== null && v !== "");
    $("#doc-head").replaceChildren(
      h("h2", { id: "doc-title", "data-doc": doc.id }, doc.title || doc.id),
      h("p", { class: "meta" }, facts.map(([k, v]) => h("span", {}, h("b", {}, k + " "), String(v)))),
    );
  }

  function rejectedItem(r) {
    return h("li", { class: "rejected" }, badge(r.kind), " ", r.label || "(no statement)",
      h("div", { class: "reason" }, h("b", {}, "reason: "), r.reason),
      r.quotes.length ? h("ul", { class: "quotes" }, r.quotes.map((q) => h("li", {}, h("q", {}, String(q))))) : null);
  }

  function evidenceItem(pos, e, j) {
    const [start, end, match, score, section, quote, modelQuote] = e;
    const ins = INDEX.insights[pos];
    const facts = `characters ${start}–${end}, ${match} match` + (match === "fuzzy" ? ` (score ${score})` : "");
    return h("li", { "data-ev": ins.id + ":" + j },
      h("button", { type: "button", class: "show", "data-ev": ins.id + ":" + j, title: "show in the text" }, "show"),
      " ", facts, INDEX.sections[section] ? h("div", { class: "section" }, INDEX.sections[section]) : null,
      quote !== null && quote !== undefined ? h("blockquote", {}, quote) : null,
      modelQuote ? h("blockquote", { class: "model" }, h("b", {}, "the model's words: "), modelQuote) : null);
  }

  function renderPanel(d, pos) {
    const doc = INDEX.docs[d];
    const parts = [];
    if (pos !== null) {
      const ins = INDEX.insights[pos];
      const rows = [];
      if (ins.c) rows.push(["category", label(ins.c)]);
      if (ins.l) rows.push(["level", ins.l]);
      for (const [k, v] of Object.entries(ins.f)) if (v !== "") rows.push([label(k), v]);
      rows.push(["insight id", ins.id]);
      parts.push(h("section", { class: "detail", id: "insight-detail", "data-insight": ins.id },
        badge(ins.k), h("p", { class: "statement" }, ins.s),
        h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        h("h4", {}, `Evidence (${ins.e.length})`),
        h("ol", { class: "evidence" }, ins.e.map((e, j) => evidenceItem(pos, e, j)))));
    } else {
      parts.push(h("p", { class: "note" }, "Select an insight, or click a highlighted passage, to see its fields."));
    }
    const mine = OF_DOC[d];
    parts.push(h("h3", {}, `Insights in this document (${mine.length})`),
      h("ol", { class: "mini" }, mine.map((i) => h("li", { class: i === pos ? "current" : "" },
        badge(INDEX.insights[i].k), " ", h("a", { href: insightHref(i) }, INDEX.insights[i].s)))));
    parts.push(h("h3", {}, `Rejected in this document (${doc.rejected.length})`),
      doc.rejected.length ? h("ol", { class: "rejected-list" }, doc.rejected.map(rejectedItem)) : null);
    $("#doc-panel").replaceChildren(...parts.filter(Boolean));
  }

  function marksOf(key) {
    return [...$("#doc-text").querySelectorAll("mark")].filter((m) => m.dataset.ev.split(" ").includes(key));
  }

  function select(d, pos) {
    for (const m of document.querySelectorAll("#doc-text mark.selected")) m.classList.remove("selected");
    renderPanel(d, pos);
    if (pos === null) return;
    const marks = [...$("#doc-text").querySelectorAll("mark")]
      .filter((m) => m.dataset.insights.split(" ").includes(String(pos)));
    for (const m of marks) m.classList.add("selected");
    if (marks.length) marks[0].scrollIntoView({ block: "center" });
  }

  async function showDoc(d, pos) {
    showPage("doc");
    const article = $("#doc-text");
    if (d === undefined) {
      $("#doc-head").replaceChildren(h("p", { class: "warning" }, "No such document or insight in this report."));
      article.replaceChildren();
      article.dataset.doc = "";
      $("#doc-panel").replaceChildren();
      return;
    }
    const doc = INDEX.docs[d];
    if (article.dataset.doc !== String(d)) {
      article.dataset.doc = String(d);
      renderHead(doc);
      article.replaceChildren(h("p", { class: "note" }, "…"));
      const payload = doc.status === "ok" ? await docText(d) : null;
      if (article.dataset.doc !== String(d)) return; // another document was opened meanwhile
      article.replaceChildren(...renderText(doc, payload));
      window.scrollTo(0, 0);
    }
    select(d, pos);
  }

  $("#doc-text").addEventListener("click", (e) => {
    const mark = e.target.closest("mark");
    if (!mark) return;
    const on = mark.dataset.insights.split(" ").map(Number);
    const current = BY_ID.get($("#insight-detail")?.dataset.insight);
    const next = on[(on.indexOf(current) + 1) % on.length]; // clicking again cycles overlapping ones
    go(insightHref(next), false);
  });
  $("#doc-panel").addEventListener("click", (e) => {
    const button = e.target.closest("button.show");
    if (!button) return;
    const marks = marksOf(button.dataset.ev);
    if (!marks.length) return;
    marks[0].scrollIntoView({ block: "center" });
    for (const m of marks) {
      m.classList.remove("flash");
      void m.offsetWidth; // restart the animation
      m.classList.add("flash");
    }
  });

  // ----------------------------------------------------------------------------------------- rejected
  function showRejected(params) {
    showPage("rejected");
    const docs = INDEX.docs.map((doc, d) => d).filter((d) => INDEX.docs[d].rejected.length);
    const reasons = new Map();
    let total = 0;
    for (const d of docs) {
      for (const r of INDEX.docs[d].rejected) {
        const key = label(r.kind) + ": " + String(r.reason).split(":")[0];
        reasons.set(key, (reasons.get(key) || 0) + 1);
        total += 1;
      }
    }
    $("#rejected-summary").replaceChildren(
      h("p", { class: "count" }, h("span", { id: "rejected-count" }, String(total)),
        ` rejected insights in ${docs.length} documents`),
      reasons.size ? h("table", { class: "counts" }, h("thead", {}, h("tr", {}, h("th", {}, "kind: reason"), h("th", {}, "count"))),
        h("tbody", {}, [...reasons].sort((a, b) => b[1] - a[1]).map(([k, n]) => h("tr", {}, h("td", {}, k), h("td", {}, n))))) : null,
    );
    const pages = Math.max(1, Math.ceil(docs.length / PAGE_SIZE));
    const page = Math.min(pages, Math.max(1, parseInt(params.get("page") || "1", 10) || 1));
    $("#rejected-list").replaceChildren(...docs.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE).map((d) =>
      h("section", { class: "rejected-doc", "data-doc": INDEX.docs[d].id },
        h("h3", {}, h("a", { href: docHref(d) }, INDEX.docs[d].title || INDEX.docs[d].id),
          ` (${INDEX.docs[d].rejected.length})`),
        h("ol", { class: "rejected-list" }, INDEX.docs[d].rejected.map(rejectedItem)))));
    pager($("#rejected-pager"), docs.length, page, (p) => hashFor("rejected", "", { page: p }));
  }

  // Pages drawn by another static file (report_themes.js, inlined before this one) register here.
  const API = { PAGES, READY, PAGE_SIZE, NONE, $, h, label, badge, hashFor, go, showPage, pager, docText,
    docHref, insightHref, get index() { return INDEX; } };
  for (const register of window.INSIGHTS_PAGES || []) register(API);

  window.addEventListener("hashchange", route);
  route().catch((error) => {
    document.body.dataset.route = "error";
    throw error;
  });
})();
