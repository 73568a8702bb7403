/* The review page's script (insights.review): plain ES2020, no library. The document text with its
   evidence is drawn by static/highlight.js (shared with the report). Every string from the data is
   inserted as text, never parsed as HTML. Decisions are POSTed with the session token of the page; the
   server appends each one to the decisions file before it answers.
   Tests wait on body.dataset: ready (state loaded), route (the hash shown), decisions (saved so far). */
"use strict";
(() => {
  const { h, label, renderParts } = window.InsightsText;
  const $ = (selector, root = document) => root.querySelector(selector);
  const TOKEN = $('meta[name="review-token"]').content;
  const STATUS = { todo: "not reviewed", accept: "accepted", reject: "rejected", edit: "edited" };

  let STATE = null; // GET /api/state
  let BY_ID = new Map(); // insight id -> position
  let current = null; // position of the insight shown
  let shownDoc = null; // position of the document drawn
  let page = "one";
  let busy = false;
  let saved = 0;
  const texts = new Map(); // document position -> its text payload (dropped when an edit moves its marks)

  const reviewer = () => $("#reviewer").value.trim().replace(/\s+/g, " ");
  const insightOf = (i) => STATE.insights[i];
  const statusOf = (ins) => (ins.r ? ins.r.decision : "todo");
  const badge = (kind) => h("span", { class: "badge k-" + kind }, label(kind));

  async function api(path, options) {
    const response = await fetch(path, options);
    let body;
    try {
      body = await response.json();
    } catch (error) {
      body = { error: `the server answered ${response.status}` };
    }
    if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
    return body;
  }

  function message(text, isError) {
    const p = $("#message");
    p.textContent = text;
    p.className = isError ? "error" : "note";
  }

  // ------------------------------------------------------------------------------------------ state
  async function load() {
    STATE = await api("/api/state?reviewer=" + encodeURIComponent(reviewer()));
    BY_ID = new Map(STATE.insights.map((ins, i) => [ins.id, i]));
    texts.clear();
    shownDoc = null;
    fillFilters();
    renderProgress();
    renderStale();
    await route();
    document.body.dataset.ready = "1";
  }

  function fillFilters() {
    const form = $("#filters");
    const kinds = [...new Set(STATE.insights.map((ins) => ins.k))];
    form.elements.kind.replaceChildren(new Option("any", ""), ...kinds.map((k) => new Option(label(k), k)));
    form.elements.doc.replaceChildren(new Option("any", ""),
      ...STATE.docs.map((doc, d) => new Option(doc.title || doc.id, String(d))));
  }

  function renderProgress() {
    const p = STATE.progress;
    const kinds = Object.entries(p.by_kind).map(([k, [done, total]]) => `${label(k)} ${done}/${total}`);
    const box = $("#progress");
    box.dataset.reviewed = String(p.reviewed);
    box.dataset.total = String(p.total);
    box.replaceChildren(h("b", {}, `${p.reviewed} / ${p.total} reviewed`), " · ", kinds.join(" · "), " · ",
      `${p.accept} accepted, ${p.reject} rejected, ${p.edit} edited`, p.carried ? ` (${p.carried} carried)` : "");
  }

  function renderStale() {
    const box = $("#stale");
    box.hidden = !STATE.stale.length;
    box.textContent = `${STATE.stale.length} of your decisions could not be placed on this run's insights (stale); ` +
      `they are kept in ${STATE.decisions}. List them with: insights review ${STATE.output} --status`;
  }

  // ---------------------------------------------------------------------------------------- filters
  function filters() {
    const form = new FormData($("#filters"));
    return {
      status: String(form.get("status") || ""), kind: String(form.get("kind") || ""),
      doc: String(form.get("doc") || ""),
      words: String(form.get("q") || "").toLowerCase().split(/\s+/).filter(Boolean),
    };
  }

  function matches(i, f) {
    const ins = STATE.insights[i];
    if (f.status && statusOf(ins) !== f.status) return false;
    if (f.kind && ins.k !== f.kind) return false;
    if (f.doc && String(ins.d) !== f.doc) return false;
    if (f.words.length) {
      const hay = [ins.s, ...Object.values(ins.f), STATE.docs[ins.d].title].join("\n").toLowerCase();
      return f.words.every((w) => hay.includes(w));
    }
    return true;
  }

  function visible() {
    const f = filters();
    const out = [];
    for (let i = 0; i < STATE.insights.length; i++) if (matches(i, f)) out.push(i);
    $("#count").textContent = String(out.length);
    return out;
  }

  function neighbour(step) {
    const list = visible();
    if (current === null) return list.length ? list[0] : null;
    const found = step > 0 ? list.find((i) => i > current) : [...list].reverse().find((i) => i < current);
    return found === undefined ? null : found;
  }

  // ------------------------------------------------------------------------------------------ pages
  function showPage(name) {
    page = name;
    for (const section of document.querySelectorAll("main > .page")) section.hidden = section.id !== "page-" + name;
    for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === name);
  }

  async function route() {
    const raw = location.hash.replace(/^#/, "");
    const slash = raw.indexOf("/");
    const name = slash < 0 ? raw : raw.slice(0, slash);
    const arg = slash < 0 ? "" : decodeURIComponent(raw.slice(slash + 1));
    if (name === "list") showList();
    else await showOne(arg && BY_ID.has(arg) ? BY_ID.get(arg) : null);
    document.body.dataset.route = location.hash;
  }

  const go = (i) => {
    const hash = "#one/" + encodeURIComponent(STATE.insights[i].id);
    if (location.hash === hash) route();
    else location.hash = hash;
  };

  function showList() {
    showPage("list");
    const list = visible();
    const items = list.slice(0, 500).map((i) => {
      const ins = STATE.insights[i];
      const st = statusOf(ins);
      return h("li", { class: "item" + (i === current ? " current" : ""), "data-insight": ins.id, "data-status": st },
        h("div", { class: "tags" }, badge(ins.k), h("span", { class: "status " + st }, STATUS[st])),
        h("a", { class: "statement", href: "#one/" + encodeURIComponent(ins.id) }, ins.s || ins.f.name || "(no statement)"),
        h("div", { class: "meta" }, STATE.docs[ins.d].title || STATE.docs[ins.d].id));
    });
    if (list.length > 500) items.push(h("li", { class: "none" }, `… and ${list.length - 500} more: narrow the filters`));
    if (!list.length) items.push(h("li", { class: "none" }, "No insight matches these filters."));
    $("#insight-list").replaceChildren(...items);
  }

  async function showOne(i) {
    showPage("one");
    closeEdit();
    if (i === null) i = neighbour(1);
    else visible();
    if (i === null || i === undefined) {
      current = null;
      $("#doc-head").replaceChildren();
      $("#doc-text").replaceChildren();
      $("#card").replaceChildren(h("p", { class: "note", id: "nothing" }, "Nothing to review with these filters."));
      return;
    }
    current = i;
    await drawDoc(STATE.insights[i].d, false);
    renderCard();
    selectMarks();
  }

  async function drawDoc(d, force) {
    if (shownDoc === d && !force) return;
    if (!texts.has(d)) texts.set(d, await api(`/api/doc/${d}?reviewer=` + encodeURIComponent(reviewer())));
    const payload = texts.get(d);
    const doc = STATE.docs[d];
    $("#doc-head").replaceChildren(h("h2", { id: "doc-title", "data-doc": doc.id }, doc.title || doc.id),
      h("p", { class: "meta" }, h("span", {}, h("b", {}, "id "), doc.id)));
    $("#doc-text").replaceChildren(...(payload.parts.length
      ? renderParts(payload, payload.chars, insightOf)
      : [h("p", { class: "warning" }, "This document's text is not available (" + payload.status +
          "): give its path to insights review to see it and to edit its quotes.")]));
    shownDoc = d;
  }

  function renderCard() {
    const ins = STATE.insights[current];
    const st = statusOf(ins);
    const rows = Object.entries(ins.f).filter(([k, v]) => k !== "statement" && v !== "");
    const choice = new Set(STATE.schema[ins.k].filter((f) => f.choices).map((f) => f.name));
    const review = ins.r;
    let said = STATUS[st];
    if (review && review.carried) said += " (carried from " + review.from + ")";
    const edited = st === "edit";
    $("#card").replaceChildren(h("section", { class: "detail", id: "insight-detail", "data-insight": ins.id, "data-status": st },
      h("div", { class: "tags" }, badge(ins.k), h("span", { class: "status " + st, id: "status" }, said)),
      h("p", { class: "statement" }, ins.s),
      h("dl", {}, rows.map(([k, v]) => [h("dt", {}, label(k)), h("dd", { "data-field": k }, choice.has(k) ? label(v) : v)])),
      edited ? h("p", { class: "model" }, h("b", {}, "the model said: "), `${label(ins.model.k)}: ${ins.model.statement}`) : null,
      review && review.note ? h("p", { class: "model" }, h("b", {}, "note: "), review.note) : null,
      h("h4", {}, `Evidence (${ins.e.length})`),
      h("ol", { class: "evidence" }, ins.e.map(([start, end, match, score, section, quote]) => h("li", {},
        `characters ${start}–${end}, ${match} match` + (match === "fuzzy" ? ` (score ${score})` : ""),
        section ? h("div", { class: "section" }, section) : null, h("blockquote", {}, quote)))),
      ins.others ? h("p", { class: "note" }, `${ins.others} other reviewer(s) decided this insight too.`) : null,
      h("p", { class: "note" }, `${(visible().indexOf(current) + 1) || "–"} of ${$("#count").textContent} matching`)));
    $("#note").value = review ? review.note : "";
  }

  function selectMarks() {
    for (const m of document.querySelectorAll("#doc-text mark.selected")) m.classList.remove("selected");
    const marks = [...document.querySelectorAll("#doc-text mark")]
      .filter((m) => m.dataset.insights.split(" ").includes(String(current)));
    for (const m of marks) m.classList.add("selected");
    if (marks.length) marks[0].scrollIntoView({ block: "center" });
  }

  // -------------------------------------------------------------------------------------- decisions
  async function decide(decision, fields) {
    const name = reviewer();
    if (!name) {
      message("Type your name in the reviewer box first: every decision is saved under it.", true);
      $("#reviewer").focus();
      return false;
    }
    localStorage.setItem("insights-reviewer", name);
    const ins = STATE.insights[current];
    const body = { insight_id: ins.id, decision, reviewer: name, note: $("#note").value.trim(), fields: fields || null };
    const result = await api("/api/decision", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Review-Token": TOKEN },
      body: JSON.stringify(body),
    });
    STATE.insights[current] = result.insight;
    STATE.progress = result.progress;
    if (decision === "edit") texts.delete(ins.d);
    renderProgress();
    return true;
  }

  async function act(decision) {
    if (busy || current === null) return;
    busy = true;
    try {
      if (await decide(decision)) {
        const was = current;
        message(`${STATUS[decision]}: saved.`);
        const next = neighbour(1);
        if (next !== null) go(next);
        else {
          await showOne(visible().includes(was) ? was : null);
          message(`${STATUS[decision]}: saved. No more insights after this one with these filters.`);
        }
        saved += 1;
        document.body.dataset.decisions = String(saved);
      }
    } catch (error) {
      message(error.message, true);
    } finally {
      busy = false;
    }
  }

  function move(step) {
    const next = neighbour(step);
    if (next !== null) go(next);
  }

  // ------------------------------------------------------------------------------------------- edit
  function fieldInputs(kind, values) {
    const schema = STATE.schema[kind];
    return [h("label", {}, "kind", h("select", { name: "kind" }, STATE.kinds.map((k) => {
      const o = new Option(label(k), k);
      o.selected = k === kind;
      return o;
    }))), ...schema.map((f) => {
      const value = values[f.name] ?? "";
      if (f.choices) {
        return h("label", {}, label(f.name), h("select", { name: f.name }, f.choices.map((c) => {
          const o = new Option(label(c), c);
          o.selected = c === value;
          return o;
        })));
      }
      const area = h("textarea", { name: f.name, rows: f.name === "statement" ? 3 : 2 });
      area.value = value;
      return h("label", {}, label(f.name), area);
    })];
  }

  function openEdit() {
    if (current === null) return;
    const ins = STATE.insights[current];
    const form = $("#edit-form");
    $("#edit-fields").replaceChildren(...fieldInputs(ins.k, ins.f));
    form.elements.quotes.value = ins.e.map((e) => String(e[5]).replace(/\s+/g, " ").trim()).join("\n");
    $("#edit-error").textContent = "";
    form.hidden = false;
    form.querySelector("textarea, select").focus();
  }

  function closeEdit() {
    $("#edit-form").hidden = true;
    $("#edit-error").textContent = "";
  }

  $("#edit-fields").addEventListener("change", (e) => {
    if (e.target.name !== "kind") return;
    const values = {};
    for (const field of $("#edit-fields").querySelectorAll("[name]")) values[field.name] = field.value;
    $("#edit-fields").replaceChildren(...fieldInputs(e.target.value, values));
  });

  $("#edit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy || current === null) return;
    busy = true;
    const fields = {};
    for (const field of $("#edit-fields").querySelectorAll("[name]")) fields[field.name] = field.value;
    fields.quotes = $("#edit-form").elements.quotes.value.split("\n").map((q) => q.trim()).filter(Boolean);
    try {
      if (await decide("edit", fields)) {
        closeEdit();
        await drawDoc(STATE.insights[current].d, true);
        renderCard();
        selectMarks();
        message("edited: saved.");
        saved += 1;
        document.body.dataset.decisions = String(saved);
      }
    } catch (error) {
      $("#edit-error").textContent = error.message;
    } finally {
      busy = false;
    }
  });
  $("#cancel-edit").addEventListener("click", closeEdit);

  // --------------------------------------------------------------------------------------- controls
  $("#accept").addEventListener("click", () => act("accept"));
  $("#reject").addEventListener("click", () => act("reject"));
  $("#edit").addEventListener("click", openEdit);
  $("#next").addEventListener("click", () => move(1));
  $("#prev").addEventListener("click", () => move(-1));

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape" && !$("#edit-form").hidden) {
      e.preventDefault();
      closeEdit();
      return;
    }
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (page !== "one" || !$("#edit-form").hidden) return;
    const keys = { a: () => act("accept"), r: () => act("reject"), e: openEdit, j: () => move(1),
      ArrowRight: () => move(1), k: () => move(-1), ArrowLeft: () => move(-1) };
    if (Object.hasOwn(keys, e.key)) {
      e.preventDefault();
      keys[e.key]();
    }
  });

  $("#doc-text").addEventListener("click", (e) => {
    const mark = e.target.closest("mark");
    if (!mark) return;
    const on = mark.dataset.insights.split(" ").map(Number);
    go(on[(on.indexOf(current) + 1) % on.length]); // clicking again cycles overlapping ones
  });

  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  const refilter = () => {
    if (page === "list") showList();
    else if (current === null || !visible().includes(current)) showOne(null);
    else renderCard();
  };
  $("#filters").addEventListener("input", refilter);
  $("#filters").addEventListener("change", refilter);

  $("#reviewer").addEventListener("change", () => {
    localStorage.setItem("insights-reviewer", reviewer());
    load().catch((error) => message(error.message, true));
  });

  if (!$("#reviewer").value) $("#reviewer").value = localStorage.getItem("insights-reviewer") || "";
  window.addEventListener("hashchange", () => route().catch((error) => message(error.message, true)));
  load().catch((error) => {
    document.body.dataset.ready = "error";
    message(error.message, true);
  });
})();
