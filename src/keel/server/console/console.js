// keel console: plain JavaScript, no build step and no CDN. Every request carries the API key.
"use strict";

const state = { key: sessionStorage.getItem("keel-key") || "", me: null, stream: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!response.ok) {
    const message = data && data.message ? data.message : response.status + " " + response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "-");
const money = (usage) => "$" + Number((usage && usage.cost_usd) || 0).toFixed(4);
const json = (value) => JSON.stringify(value, null, 2);
const statusTag = (status) => el("span", { class: "status " + status, "data-status": status }, status);

// -- sign-in and routing --------------------------------------------------------------------------
async function signIn(key) {
  state.key = key;
  try {
    state.me = await api("GET", "/v1/me");
  } catch (error) {
    state.key = "";
    sessionStorage.removeItem("keel-key");
    $("sign-in-error").textContent = error.status === 401 ? "That key is unknown or revoked." : error.message;
    return false;
  }
  sessionStorage.setItem("keel-key", key);
  $("who").textContent = "tenant " + state.me.tenant + " · key " + state.me.key_id;
  const agents = $("filter-agent");
  agents.replaceChildren(el("option", { value: "" }, "any"), ...state.me.agents.map((a) => el("option", {}, a)));
  return true;
}

function signOut() {
  sessionStorage.removeItem("keel-key");
  state.key = "";
  state.me = null;
  location.hash = "";
  route();
}

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + view;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.tab === view);
}

async function route() {
  if (state.stream) { state.stream.abort(); state.stream = null; }
  showError(null);
  const signedIn = Boolean(state.me);
  $("sign-in").hidden = signedIn;
  $("nav").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  if (!signedIn) { show("none"); $("who").textContent = ""; return; }
  const [, view, id] = (location.hash || "#/runs").split("/");
  try {
    if (view === "runs" && id) { show("run"); await showRun(decodeURIComponent(id)); }
    else if (view === "approvals") { show("approvals"); await showApprovals(); }
    else if (view === "charts") { show("charts"); await showCharts(); }
    else if (view === "alerts") { show("alerts"); await showAlerts(); }
    else { show("runs"); await showRuns(); }
    refreshBadges();
  } catch (error) { showError(error); }
}

async function refreshBadges() {
  try {
    const [pending, alerts] = await Promise.all([api("GET", "/v1/approvals"), api("GET", "/v1/alerts")]);
    $("pending-count").textContent = pending.length || "";
    $("alert-count").textContent = alerts.alerts.length || "";
  } catch (error) { /* badges are a nicety */ }
}

// -- runs -------------------------------------------------------------------------------------------
async function showRuns() {
  const params = new URLSearchParams({ limit: "100" });
  if ($("filter-status").value) params.set("status", $("filter-status").value);
  if ($("filter-agent").value) params.set("agent", $("filter-agent").value);
  const data = await api("GET", "/v1/runs?" + params);
  $("runs-body").replaceChildren(...data.runs.map((run) =>
    el("tr", { "data-run": run.run_id, onclick: () => { location.hash = "#/runs/" + encodeURIComponent(run.run_id); } },
      el("td", {}, el("code", {}, run.run_id.slice(0, 22))), el("td", {}, run.agent), el("td", {}, statusTag(run.status)),
      el("td", {}, run.task.length > 80 ? run.task.slice(0, 79) + "…" : run.task), el("td", {}, run.steps),
      el("td", {}, money(run.usage)), el("td", {}, when(run.created_at)))));
}

async function showRun(runId) {
  const run = await api("GET", "/v1/runs/" + encodeURIComponent(runId));
  $("run-id").textContent = run.run_id;
  renderSummary(run);
  $("run-cancel").onclick = () => act("POST", "/v1/runs/" + encodeURIComponent(runId) + "/cancel");
  $("run-resume").onclick = () => act("POST", "/v1/runs/" + encodeURIComponent(runId) + "/resume");
  $("feedback-form").onsubmit = (event) => sendFeedback(event, runId);
  $("feedback-list").replaceChildren(...run.feedback.map(feedbackItem));
  $("timeline").replaceChildren(...planItems(run.plan), ...policyItems(run.messages));
  followEvents(runId);
}

function renderSummary(run) {
  const rows = [["status", statusTag(run.status)], ["agent", run.agent], ["task", run.task], ["steps", run.steps],
    ["tokens", (run.usage.input_tokens || 0) + " in, " + (run.usage.output_tokens || 0) + " out"],
    ["cost", money(run.usage)], ["started", when(run.created_at)], ["updated", when(run.updated_at)]];
  if (run.output !== null && run.output !== undefined) rows.push(["output", typeof run.output === "string" ? run.output : json(run.output)]);
  if (run.error) rows.push(["error", run.error]);
  $("run-summary").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)]));
}

function planItems(plan) {
  // With explicit planning, the run's plan heads its timeline: each step with its status.
  if (!plan) return [];
  return [el("li", { class: "plan", "data-plan": plan.version },
    el("span", { class: "kind" }, "plan v" + plan.version), el("span", { class: "meta" }, plan.goal),
    el("ol", {}, ...plan.steps.map((step) => el("li", { "data-step-status": step.status },
      "[" + step.status + "] " + step.action + (step.tool ? " (" + step.tool + ")" : "")))))];
}

function policyItems(messages) {
  // Calls a policy refused never ran, so the journal has no row for them; the conversation does.
  return (messages || []).filter((m) => m.role === "tool" && m.rejected).map((m) =>
    el("li", { class: "policy_decision" }, el("span", { class: "kind" }, "policy decision"),
      el("span", { class: "meta" }, m.name), el("div", {}, m.content)));
}

async function act(method, path, body) {
  try { await api(method, path, body); await route(); } catch (error) { showError(error); }
}

async function sendFeedback(event, runId) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {};
  if (form.get("thumbs")) body.thumbs = form.get("thumbs");
  if (form.get("score")) body.score = Number(form.get("score"));
  if (form.get("comment")) body.comment = form.get("comment");
  try {
    const item = await api("POST", "/v1/runs/" + encodeURIComponent(runId) + "/feedback", body);
    $("feedback-list").append(feedbackItem(item));
    event.target.reset();
  } catch (error) { showError(error); }
}

const feedbackItem = (f) => el("li", {}, (f.thumbs ? "thumbs " + f.thumbs + " " : "") +
  (f.score ? f.score + "/5 " : "") + (f.comment || "") + " — " + (f.by || "") + ", " + when(f.created_at));

// The run's events, from its journal, over server-sent events read with fetch (EventSource cannot send the key).
async function followEvents(runId) {
  const controller = new AbortController();
  state.stream = controller;
  let lastId = null;
  while (!controller.signal.aborted) {
    try {
      const headers = { Authorization: "Bearer " + state.key };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch("/v1/runs/" + encodeURIComponent(runId) + "/events", { headers, signal: controller.signal });
      if (!response.ok) throw new Error("events: " + response.status);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = { };
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) event.id = line.slice(4);
            else if (line.startsWith("event: ")) event.kind = line.slice(7);
            else if (line.startsWith("data: ")) event.data = JSON.parse(line.slice(6));
          }
          if (event.id) lastId = event.id;
          if (event.kind === "end") return;
          if (event.kind) onEvent(runId, event);
        }
      }
      return;
    } catch (error) {
      if (controller.signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 1000)); // reconnect, resuming after lastId
    }
  }
}

async function onEvent(runId, event) {
  if (event.kind === "status") {
    const run = await api("GET", "/v1/runs/" + encodeURIComponent(runId));
    renderSummary(run);
    return;
  }
  const item = timelineItem(event.data);
  if (item) $("timeline").append(item);
}

function timelineItem(event) {
  const d = event.data || {};
  const head = (label, meta) => [el("span", { class: "kind" }, label), el("span", { class: "meta" }, "step " + event.step + (meta ? " · " + meta : ""))];
  const li = (cls, ...children) => el("li", { class: cls, "data-kind": event.kind, "data-id": event.id }, ...children);
  switch (event.kind) {
    case "model_response": {
      const usage = d.usage || {};
      const meta = (usage.input_tokens || 0) + "+" + (usage.output_tokens || 0) + " tokens · " + money(usage) + " · " + Math.round(d.duration_ms || 0) + " ms";
      const calls = (d.tool_calls || []).map((c) => el("div", {}, "calls ", el("code", {}, c.name), " ", el("pre", {}, json(c.arguments))));
      return li("model_response", head("model call", (d.model || "") + " · " + meta), d.content ? el("div", {}, d.content) : null, calls);
    }
    case "tool_result":
      return li("tool_result" + (d.is_error ? " error" : ""), head("tool " + d.name, Math.round(d.duration_ms || 0) + " ms" + (d.is_error ? " · error" : "")),
        el("pre", {}, json(d.arguments)), el("div", {}, "→ " + d.content));
    case "tool_started":
      return li("tool_result", head("tool " + d.name + " started", "not finished"), el("pre", {}, json(d.arguments)));
    case "approval_requested":
    case "attention_requested":
      return li(event.kind, head(event.kind === "approval_requested" ? "approval requested" : "attention requested", d.tool || d.kind),
        el("div", { class: "why" }, d.reason || ""), d.arguments ? el("pre", {}, json(d.arguments)) : null);
    case "approval_decided":
    case "attention_decided":
      return li(event.kind, head((event.kind === "approval_decided" ? "approval " : "decision ") + (d.decision || ""), (d.by || "") + (d.decided_at ? " · " + when(d.decided_at) : "")),
        d.note ? el("div", {}, "note: " + d.note) : null, d.edited ? el("pre", {}, "edited to " + json(d.arguments)) : null);
    default:
      return null;
  }
}

// -- approvals ------------------------------------------------------------------------------------
async function showApprovals() {
  const pending = await api("GET", "/v1/approvals");
  $("approvals-empty").hidden = pending.length > 0;
  $("approvals-list").replaceChildren(...pending.map(approvalCard));
}

function approvalCard(a) {
  const editor = el("textarea", { "aria-label": "edited arguments", hidden: "" }, json(a.arguments || {}));
  const note = el("input", { placeholder: "note or reason", "aria-label": "note", maxlength: "10000" });
  const message = el("span", { class: "error" });
  const decide = async (path, body) => {
    try { await api("POST", "/v1/approvals/" + encodeURIComponent(a.id) + "/" + path, body); await showApprovals(); refreshBadges(); }
    catch (error) { message.textContent = error.message; }
  };
  const edit = () => {
    if (editor.hidden) { editor.hidden = false; return; }
    let args;
    try { args = JSON.parse(editor.value); } catch (error) { message.textContent = "arguments: not valid JSON (" + error.message + ")"; return; }
    decide("edit", { arguments: args, note: note.value || null });
  };
  return el("div", { class: "approval", "data-approval": a.id },
    el("div", {}, el("strong", {}, a.tool || a.kind), " for ", el("a", { href: "#/runs/" + encodeURIComponent(a.run_id) }, a.run_id), " (" + (a.agent || "") + ")"),
    el("div", { class: "why" }, "Why: " + a.reason),
    el("pre", { "data-field": "arguments" }, json(a.arguments)),
    el("div", { class: "meta" }, "requested " + when(a.requested_at) + (a.expires_at ? " · expires " + when(a.expires_at) : "")),
    editor,
    el("div", { class: "buttons" }, note,
      a.kind === "approval" ? [
        el("button", { onclick: () => decide("approve", { note: note.value || null, arguments_hash: a.arguments_hash }) }, "Approve"),
        el("button", { class: "danger", onclick: () => note.value ? decide("reject", { reason: note.value }) : (message.textContent = "give a reason to reject") }, "Reject"),
        el("button", { class: "secondary", onclick: edit }, "Edit"),
      ] : ["retry", "skip", "fail", "continue"].map((d) => el("button", { class: "secondary", onclick: () => decide("resolve", { decision: d, note: note.value || null }) }, d)),
      message));
}

// -- charts and alerts ----------------------------------------------------------------------------
const CHARTS = [["completion_rate", "Completion rate", 1], ["error_rate", "Error rate", 1], ["steps_per_run", "Steps per run", null],
  ["cost_per_run", "Cost per run ($)", null], ["satisfaction", "User satisfaction", 1]];

async function showCharts() {
  const data = await api("GET", "/v1/stats?hours=" + $("chart-hours").value + "&buckets=24");
  $("charts").replaceChildren(...CHARTS.map(([field, title, max]) => chart(title, data.points, field, max)));
}

function chart(title, points, field, fixedMax) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 320 140");
  svg.setAttribute("data-chart", field);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  const values = points.map((p) => p[field]).filter((v) => v !== null);
  const max = fixedMax || Math.max(...values, 0) * 1.1 || 1;
  const x = (i) => 30 + (i * 280) / Math.max(1, points.length - 1);
  const y = (v) => 120 - (v / max) * 110;
  add("line", { class: "axis", x1: 30, y1: 120, x2: 310, y2: 120 });
  add("line", { class: "axis", x1: 30, y1: 10, x2: 30, y2: 120 });
  add("text", { x: 2, y: 14 }, max < 10 ? max.toFixed(2) : Math.round(max));
  add("text", { x: 2, y: 122 }, "0");
  const drawn = points.map((p, i) => [p[field], i]).filter(([v]) => v !== null);
  if (drawn.length) {
    add("polyline", { class: "line", points: drawn.map(([v, i]) => x(i) + "," + y(v)).join(" ") });
    for (const [v, i] of drawn) add("circle", { class: "dot", cx: x(i), cy: y(v), r: 2.5 });
  } else {
    add("text", { x: 130, y: 70 }, "no data");
  }
  return el("div", { class: "chart" }, el("h3", {}, title), svg);
}

async function showAlerts() {
  const data = await api("GET", "/v1/alerts");
  $("alerts-empty").hidden = data.alerts.length > 0;
  $("alerts-list").replaceChildren(...data.alerts.map((a) => el("li", { "data-alert": a.key }, el("strong", {}, a.metric.replace(/_/g, " ") + " " + a.direction), " · " + a.message + " · " + when(a.raised_at))));
}

// -- start ------------------------------------------------------------------------------------------
$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  if (await signIn($("api-key").value.trim())) { if (!location.hash) location.hash = "#/runs"; route(); }
});
$("sign-out").addEventListener("click", signOut);
$("run-filters").addEventListener("submit", (event) => { event.preventDefault(); showRuns().catch(showError); });
$("chart-hours").addEventListener("change", () => showCharts().catch(showError));
window.addEventListener("hashchange", route);
(async () => { if (state.key) await signIn(state.key); route(); })();
