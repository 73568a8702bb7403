/* Evidence highlighting shared by the report (report.js, inlined after this file) and the review page
   (review.js, loaded after it): plain ES2020, no library, no network. The text payload format
   ({"parts": [[start, end, text], ...], "marks": [[part, u16start, u16end, insight, evidence], ...]}) is
   made by insights.report.mark_text and described in insights/report.py. Strings from the data are
   inserted as text nodes and attributes, never parsed as HTML. */
"use strict";
window.InsightsText = (() => {
  const label = (value) => String(value ?? "").replace(/_/g, " ");

  /* An element with attributes and children; strings become text nodes. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat(2)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /* base64 of gzip of JSON -> the value. */
  async function unpack(b64) {
    const binary = atob(b64.trim());
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  /* The part's text cut at every mark boundary; each piece under marks is one <mark> listing them all,
     so overlapping spans stay visible and each span's pieces, in order, spell exactly its passage.
     insightOf(position) gives {id, k (kind), s (statement)} of the insight a mark belongs to. */
  function segments(text, marks, insightOf) {
    const cuts = new Set([0, text.length]);
    for (const m of marks) cuts.add(m[1]).add(m[2]);
    const points = [...cuts].sort((a, b) => a - b);
    const nodes = [];
    for (let k = 0; k + 1 < points.length; k++) {
      const [a, b] = [points[k], points[k + 1]];
      const on = marks.filter((m) => m[1] <= a && b <= m[2]);
      const piece = text.slice(a, b);
      if (!on.length) {
        nodes.push(piece);
        continue;
      }
      const first = insightOf(on[0][3]);
      nodes.push(h("mark", {
        class: "k-" + first.k + (on.length > 1 ? " overlap" : ""),
        "data-ev": on.map((m) => insightOf(m[3]).id + ":" + m[4]).join(" "),
        "data-insights": on.map((m) => m[3]).join(" "),
        title: on.map((m) => label(insightOf(m[3]).k) + ": " + insightOf(m[3]).s).join("\n"),
      }, piece));
    }
    return nodes;
  }

  const elided = (n) => h("div", { class: "elided" }, `[… ${n.toLocaleString("en")} characters not shown …]`);

  /* The nodes of a payload's parts, with the elided stretches between them (chars: the text's length). */
  function renderParts(payload, chars, insightOf) {
    const nodes = [];
    let shown = 0;
    payload.parts.forEach(([start, end, text], p) => {
      if (start > shown) nodes.push(elided(start - shown));
      const marks = payload.marks.filter((m) => m[0] === p);
      nodes.push(h("div", { class: "part", "data-start": start }, segments(text, marks, insightOf)));
      shown = end;
    });
    if (chars > shown) nodes.push(elided(chars - shown));
    return nodes;
  }

  return { h, label, unpack, segments, renderParts };
})();
