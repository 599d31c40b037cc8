// DCloud console: a single-page app over /graphql (queries, mutations) and
// /graphql/ws (graphql-transport-ws subscriptions, with polling as the fallback).
// No framework: views are built with the small `h` helper (no innerHTML of data).
"use strict";

// ---------- helpers ----------
const $ = (sel, root) => (root || document).querySelector(sel);
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}
const svgNs = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
function gib(bytes) {
  const g = bytes / 1073741824;
  if (g >= 10240) return (g / 1024).toLocaleString(undefined, { maximumFractionDigits: 0 }) + " TiB";
  return g >= 100 ? g.toFixed(0) + " GiB" : g >= 1 ? g.toFixed(1) + " GiB" : (bytes / 1048576).toFixed(0) + " MiB";
}
const cores = (m) => (m % 1000 === 0 ? (m / 1000).toLocaleString() : (m / 1000).toFixed(2)) + (m === 1000 ? " core" : " cores");
const when = (ms) => (ms === null || ms === undefined ? "never" : new Date(ms).toLocaleString());
function ago(ms) {
  if (!ms) return "never";
  const s = Math.round((Date.now() - ms) / 1000);
  return s < 60 ? s + "s ago" : s < 3600 ? Math.round(s / 60) + "m ago" : Math.round(s / 3600) + "h ago";
}
// Replaces `el`'s children (skipping null/false, flattening lists, like `h`).
function fill(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}
const badge = (v) => h("span", { class: "badge s-" + v, text: v });
function flash(text, bad) {
  const box = $("#flash");
  const m = h("div", { class: "msg " + (bad ? "bad" : "info"), text });
  box.append(m);
  setTimeout(() => m.remove(), bad ? 9000 : 4000);
}
const hasRole = (...roles) => app.me && roles.includes(app.me.role);
const canWrite = () => hasRole("ADMIN", "USER");

// ---------- GraphQL over HTTP ----------
class GqlError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join("; "));
    this.errors = errors;
  }
  get fields() {
    return this.errors.flatMap((e) => (e.extensions && e.extensions.fields) || []);
  }
  get code() {
    const e = this.errors.find((x) => x.extensions && x.extensions.code);
    return e ? e.extensions.code : null;
  }
}
async function gql(query, variables) {
  const res = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer " + app.token },
    body: JSON.stringify({ query, variables: variables || {} }),
  });
  let body;
  try { body = await res.json(); } catch (_) { throw new GqlError([{ message: "server answered " + res.status }]); }
  if (body.errors && body.errors.length) throw new GqlError(body.errors);
  return body.data;
}

// Every item of a connection, page by page (the server caps each query's cost by
// `first`, so big lists come in pages). `query` takes `$after: String` and `$first: Int`.
async function pages(query, vars, pick, first) {
  const out = [];
  let after = null;
  for (let i = 0; i < 100; i++) {
    const conn = pick(await gql(query, Object.assign({}, vars, { after, first: first || 100 })));
    out.push(...conn.nodes);
    if (!conn.pageInfo.hasNextPage || !conn.pageInfo.endCursor) break;
    after = conn.pageInfo.endCursor;
  }
  return out;
}

// ---------- subscriptions (graphql-transport-ws), with a polling fallback ----------
class Live {
  constructor() { this.ws = null; this.ready = false; this.subs = new Map(); this.next = 1; this.failed = false; }
  connect() {
    if (this.ws || this.failed || !("WebSocket" in window)) return;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql/ws";
    let ws;
    try { ws = new WebSocket(url, "graphql-transport-ws"); } catch (_) { this.fail(); return; }
    this.ws = ws;
    const bearer = "Bearer " + app.token;
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: bearer, authorization: bearer, token: app.token } }));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "connection_ack") {
        this.ready = true; setMode("live");
        for (const [id, sub] of this.subs) this.sendSub(id, sub);
      } else if (msg.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
      else if (msg.type === "next") {
        const sub = this.subs.get(msg.id);
        if (sub && msg.payload && msg.payload.data) {
          // Resume after the last event seen when the socket has to reconnect.
          const first = Object.values(msg.payload.data)[0];
          if (first && typeof first.seq === "number" && "after" in sub.variables) sub.variables.after = first.seq;
          sub.onData(msg.payload.data);
        }
      } else if (msg.type === "error") {
        const sub = this.subs.get(msg.id);
        if (sub) {
          this.subs.delete(msg.id);
          if (sub.on.error) sub.on.error((msg.payload || []).map((e) => e.message).join("; ") || "refused");
          else sub.startPolling();
        }
      } else if (msg.type === "complete") {
        const sub = this.subs.get(msg.id);
        if (sub) { this.subs.delete(msg.id); if (sub.on.complete) sub.on.complete(); }
      }
    };
    ws.onclose = () => {
      const wasReady = this.ready;
      this.ws = null; this.ready = false;
      if (!wasReady) this.fail();
      else { setMode("reconnecting"); for (const sub of this.subs.values()) sub.startPolling(); setTimeout(() => this.reconnect(), 2000); }
    };
  }
  reconnect() {
    if (!app.token || this.ws) return;
    this.connect();
  }
  fail() {
    this.failed = true; setMode("polling");
    for (const sub of this.subs.values()) sub.startPolling();
  }
  sendSub(id, sub) {
    sub.stopPolling();
    // A stream that starts over (after a reconnect) sends its backlog again.
    if (sub.sent && sub.on.restart) sub.on.restart();
    sub.sent = true;
    this.ws.send(JSON.stringify({ id, type: "subscribe", payload: { query: sub.query, variables: sub.variables } }));
  }
  // Subscribes `query`; `onData` gets each result. While no websocket carries it,
  // `poll` runs every `every` ms instead. `on.error(message)` and `on.complete()`
  // hear a refused or finished stream (without `on.error`, a refusal falls back to
  // polling); `on.restart()` hears that it is sent again after a reconnect. Returns a
  // function that ends it.
  subscribe(query, variables, onData, poll, every, on) {
    const id = String(this.next++);
    let timer = null;
    const sub = {
      query, variables, onData, on: on || {},
      startPolling() { if (!timer && poll) timer = setInterval(() => poll().catch(() => {}), every || 3000); },
      stopPolling() { if (timer) { clearInterval(timer); timer = null; } },
    };
    this.subs.set(id, sub);
    if (this.ready) this.sendSub(id, sub);
    else if (this.failed) sub.startPolling();
    else { this.connect(); sub.startPolling(); }
    return () => {
      sub.stopPolling();
      if (this.subs.delete(id) && this.ready && this.ws) this.ws.send(JSON.stringify({ id, type: "complete" }));
    };
  }
  close() {
    for (const sub of this.subs.values()) sub.stopPolling();
    this.subs.clear();
    if (this.ws) { this.ready = false; const ws = this.ws; this.ws = null; ws.onclose = null; ws.close(); }
    this.failed = false;
  }
}
function setMode(mode) {
  const el = $("#live-mode");
  el.textContent = mode === "live" ? "live" : mode === "polling" ? "polling" : mode;
  el.dataset.mode = mode;
}

// ---------- app state, sign-in and routing ----------
const app = { token: sessionStorage.getItem("dcloud.token") || "", me: null, live: new Live(), cleanup: [], features: {} };

// What this server offers beyond the core API (other parts of the API arrive in later
// versions): a field the schema lacks fails validation with "Unknown field".
async function probeFeatures() {
  const has = async (q) => {
    try { await gql(q); return true; } catch (e) { return !/Unknown (field|argument|type)/i.test(e.message); }
  };
  const [endpoints, quota, logs, exec] = await Promise.all([
    has("{ deployments(first: 0) { nodes { endpoints { name url ready } } } }"),
    has("{ me { quota { gpus } usage { gpus } } }"),
    has('subscription { deploymentLogs(id: "-", follow: false) { stream line } }'),
    fetch("/exec").then((r) => r.status !== 404, () => false),
  ]);
  app.features = { endpoints, quota, logs, exec };
  document.body.dataset.features = Object.keys(app.features).filter((k) => app.features[k]).join(" ");
}

async function signIn(token) {
  app.token = token;
  const data = await gql("{ me { name role label nodeId } }");
  app.me = data.me;
  await probeFeatures();
  sessionStorage.setItem("dcloud.token", token);
  $("#signin").hidden = true;
  $("#tabs").hidden = false;
  $("#who").hidden = false;
  $("#who-name").textContent = app.me.name + " (" + app.me.role.toLowerCase() + ")";
  for (const a of document.querySelectorAll("#tabs a[data-roles]")) {
    a.parentElement.hidden = !a.dataset.roles.split(" ").includes(app.me.role);
  }
  setMode("connecting");
  app.live.connect();
  if (!location.hash || location.hash === "#/") location.hash = "#/cluster";
  else route();
}
function signOut() {
  sessionStorage.removeItem("dcloud.token");
  app.token = ""; app.me = null;
  app.live.close();
  endView();
  $("#view").replaceChildren();
  $("#tabs").hidden = true; $("#who").hidden = true; $("#signin").hidden = false;
  $("#token-input").focus();
}
function endView() {
  for (const f of app.cleanup) f();
  app.cleanup = [];
}
const routes = [];
function on(pattern, view) { routes.push([pattern, view]); }
async function route() {
  if (!app.me) return;
  endView();
  const path = location.hash.replace(/^#/, "") || "/cluster";
  const tab = path.split("/")[1];
  for (const a of document.querySelectorAll("#tabs a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const view = $("#view");
  const link = document.querySelector(`#tabs a[data-tab="${tab}"][data-roles]`);
  if (link && !link.dataset.roles.split(" ").includes(app.me.role)) {
    fill(view, h("p", { class: "error", role: "alert", id: "not-for-role",
      text: "This page is for " + link.dataset.roles.toLowerCase().split(" ").map((r) => r + "s").join(" and ") + "; you are signed in as a " + app.me.role.toLowerCase() + "." }));
    view.dataset.ready = path;
    return;
  }
  for (const [re, fn] of routes) {
    const m = path.match(re);
    if (m) {
      fill(view, h("p", { class: "muted", text: "Loading…" }));
      // The page is ready when its view has loaded its data and drawn it: the browser
      // test reads these marks (time since navigation, and since this route began).
      const began = performance.now();
      delete view.dataset.ready;
      try { await fn(view, ...m.slice(1).map(decodeURIComponent)); }
      catch (e) { fill(view, h("p", { class: "error", role: "alert", text: "Could not load: " + e.message })); }
      if ((location.hash.replace(/^#/, "") || "/cluster") !== path) return;
      view.dataset.ready = path;
      view.dataset.readyMs = Math.round(performance.now());
      view.dataset.routeMs = Math.round(performance.now() - began);
      return;
    }
  }
  fill(view, h("p", { text: "Nothing here." }));
}
window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#signin-error").textContent = "";
    try { await signIn($("#token-input").value.trim()); $("#token-input").value = ""; }
    catch (e) { app.token = ""; $("#signin-error").textContent = "Sign-in failed: " + e.message; }
  });
  $("#sign-out").addEventListener("click", signOut);
  if (app.token) signIn(app.token).catch(() => signOut());
  else { $("#signin").hidden = false; $("#token-input").focus(); }
});

// ---------- resources ----------
const RES = "{ cpuMillis memoryBytes gpus storageBytes }";
const NODE_FIELDS = `id hostname os health state draining engineOk lastHeartbeatMs lastSeenMs
  capacity ${RES} allocatable ${RES} allocated ${RES} usage { cpuMillis memoryBytes }
  labels { key value } deploymentIds`;

function bar(label, cap, alloc, used, fmt) {
  const pct = (v) => (cap > 0 ? Math.min(100, (100 * v) / cap) : 0).toFixed(1) + "%";
  const text = fmt(alloc) + " allocated" + (used === null ? "" : ", " + fmt(used) + " in use") + " of " + fmt(cap);
  return [
    h("span", { class: "bar-label", text: label }),
    h("div", { class: "bar", role: "img", "aria-label": label + ": " + text },
      h("div", { class: "alloc", style: "width:" + pct(alloc) }),
      used === null ? null : h("div", { class: "used", style: "width:" + pct(used) })),
    h("span", { class: "bar-text", text }),
  ];
}
function resourceBars(cap, alloc, usage) {
  return h("div", { class: "bars" },
    bar("CPU", cap.cpuMillis, alloc.cpuMillis, usage ? usage.cpuMillis : null, cores),
    bar("RAM", cap.memoryBytes, alloc.memoryBytes, usage ? usage.memoryBytes : null, gib),
    bar("GPU", cap.gpus, alloc.gpus, null, (n) => n + " GPU" + (n === 1 ? "" : "s")),
    bar("Storage", cap.storageBytes, alloc.storageBytes, null, gib));
}
const legend = () => h("p", { class: "legend" },
  h("span", {}, h("span", { class: "swatch", style: "background:var(--alloc)" }), "allocated"),
  h("span", {}, h("span", { class: "swatch", style: "background:var(--used)" }), "in use"),
  h("span", { text: "bar length = allocatable capacity" }));

function nodeCard(n) {
  return h("article", { class: "card", "data-node": n.id, "aria-labelledby": "node-" + n.id },
    h("h3", { id: "node-" + n.id }, n.hostname, " ", h("span", { class: "muted small mono", text: n.id })),
    h("p", {}, badge(n.health), " ", badge(n.state), n.draining ? " draining" : "",
      h("span", { class: "muted small" }, " · last heartbeat ", h("time", { datetime: n.lastHeartbeatMs ? new Date(n.lastHeartbeatMs).toISOString() : "", title: when(n.lastHeartbeatMs), text: ago(n.lastHeartbeatMs) }),
        " · seen ", ago(n.lastSeenMs))),
    resourceBars(n.allocatable, n.allocated, n.usage),
    h("p", { class: "small muted" }, n.os, " · capacity ", cores(n.capacity.cpuMillis), ", ", gib(n.capacity.memoryBytes), ", ",
      n.capacity.gpus, " GPU, ", gib(n.capacity.storageBytes), " · ", n.deploymentIds.length, " deployments",
      n.labels.length ? " · " + n.labels.map((l) => l.key + "=" + l.value).join(", ") : ""));
}
// ---------- documents with errors next to their fields ----------
// Finds the line of `path` (`resources.ram`, `port-publish[1].external.ports`) in a
// JSON or YAML text: each key in turn, searched from the line of the one before.
function lineOfPath(lines, path) {
  const tokens = [];
  for (const part of path.split(".")) {
    const m = part.match(/^([^[\]]*)((?:\[\d+\])*)$/);
    if (!m) return -1;
    if (m[1]) tokens.push({ key: m[1] });
    for (const ix of m[2].matchAll(/\[(\d+)\]/g)) tokens.push({ index: Number(ix[1]) });
  }
  const esc = (k) => k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const keyRe = (k) => new RegExp('(^|[{,\\s-])("' + esc(k) + '"|' + esc(k) + ")\\s*:");
  let pos = 0, found = -1, skip = 0;
  for (const t of tokens) {
    if (t.index !== undefined) { skip = t.index; continue; }
    const re = keyRe(t.key);
    let hit = -1;
    for (let i = pos; i < lines.length; i++) {
      if (re.test(lines[i])) { if (skip === 0) { hit = i; break; } skip--; }
    }
    skip = 0;
    if (hit < 0) return found;
    found = pos = hit;
  }
  return found;
}
// Each problem is shown once: on the line of its field (on a row of its own below the
// line, so long lines never hide it), or, when no line can be found (or the document
// is a single line), in the list above the document.
function annotatedDoc(text, fields) {
  const lines = text.split("\n");
  const at = new Map();
  const loose = [];
  for (const f of fields) {
    const i = f.path && lines.length > 1 ? lineOfPath(lines, f.path) : -1;
    if (i >= 0) { if (!at.has(i)) at.set(i, []); at.get(i).push(f); } else loose.push(f);
  }
  const item = (f) => h("li", { class: "field-error", "data-path": f.path || "" }, h("code", { text: f.path || "(document)" }), ": ", f.message);
  return h("div", {},
    loose.length ? h("ul", { class: "errors", "aria-label": "Problems found" }, loose.map(item)) : null,
    at.size ? h("div", { class: "doc", role: "region", "aria-label": "The document with its errors" },
      lines.map((line, i) => h("div", { class: "line" + (at.has(i) ? " has-error" : "") },
        h("span", { class: "ln", text: i + 1 }), h("code", { text: line }),
        at.has(i) ? h("div", { class: "line-errors" }, at.get(i).map((f) => h("div", { class: "field-error", "data-path": f.path, text: f.path + ": " + f.message }))) : null))) : null);
}
function showError(box, e, text) {
  if (e instanceof GqlError && e.fields.length) {
    const n = e.fields.length;
    box.replaceChildren(h("p", { class: "error", role: "alert", text: "The document was refused (" + n + (n === 1 ? " problem" : " problems") + "): nothing was changed." }),
      text !== undefined ? annotatedDoc(text, e.fields) : h("ul", { class: "errors" }, e.fields.map((f) => h("li", { class: "field-error", "data-path": f.path, text: f.path + ": " + f.message }))));
  } else box.replaceChildren(h("p", { class: "error", role: "alert", text: e.message }));
}

// ---------- Environments ----------
const SPEC = `name versionLabel os isActive languages { name libraries } resources ${RES}
  ports { external internal protocol } storage { target sizeBytes lifecycle } nodeLabels { key value }
  datasets { category dbs { name datasets { name version } } } document`;

async function deploy(envId, envName) {
  try {
    const d = await gql("mutation($e: String!) { deploy(environment: $e) { id status } }", { e: envId });
    flash((envName ? envName + ": deployment" : "Deployment") + " requested (" + d.deploy.status.toLowerCase() + ")");
    location.hash = "#/deployments/" + encodeURIComponent(d.deploy.id);
  } catch (e) { flash("Deploy refused: " + e.message, true); }
}
function uploadCard(onDone) {
  const result = h("div", { id: "upload-result", "aria-live": "polite" });
  const text = h("textarea", { id: "upload-text", name: "document", spellcheck: "false", "aria-describedby": "upload-help" });
  const file = h("input", { id: "upload-file", type: "file", accept: ".json,.yaml,.yml,application/json,text/yaml",
    onchange: async () => { if (file.files[0]) { text.value = await file.files[0].text(); result.replaceChildren(); } } });
  const format = h("select", { id: "upload-format" }, ["AUTO", "JSON", "YAML"].map((f) => h("option", { value: f, text: f.toLowerCase() })));
  const form = h("form", { id: "upload-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const doc = text.value;
    result.replaceChildren(h("p", { class: "muted", text: "Applying…" }));
    try {
      const d = await gql("mutation($d: String!, $f: DocumentFormat) { apply(document: $d, format: $f) { documents { index kind id action version } events } }", { d: doc, f: format.value });
      result.replaceChildren(h("p", { class: "ok", role: "status" }, "Applied: ",
        d.apply.documents.map((x) => x.kind.toLowerCase() + " " + x.id + " " + x.action.toLowerCase() + (x.version ? " (version " + x.version + ")" : "")).join(", ")));
      onDone(d.apply);
    } catch (e) { showError(result, e, doc); }
  } },
    h("label", { for: "upload-file", text: "Environment file (JSON or YAML)" }), file,
    h("label", { for: "upload-text", text: "Document" }), text,
    h("p", { id: "upload-help", class: "help", text: "Pick a file or paste a document; a list of documents is applied together. Environments of the same env-name as one of yours get a new version." }),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "upload-format", text: "Format" }), format),
      h("div", {}, h("button", { type: "submit", class: "primary", id: "upload-apply", text: "Upload and apply" }))),
    result);
  return h("section", { class: "card", "aria-labelledby": "upload-h" }, h("h3", { id: "upload-h", text: "Upload a file" }), form);
}
// The checks the server makes on the form's fields, made first in the browser so a
// value the GraphQL types would turn into null (a GPU count of "x") is never sent.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
function checkTemplateFields(v) {
  const errs = {};
  if (v.name !== null && !NAME_RE.test(v.name)) errs["tpl-name"] = JSON.stringify(v.name) + " is not a valid name; use letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters";
  if (v.gpu !== null && !/^\d{1,3}$/.test(v.gpu)) errs["tpl-gpu"] = JSON.stringify(v.gpu) + " is not a whole number of GPUs; use 0, 1, 2…";
  return errs;
}
// Creates an environment from `template` with `overrides`, and deploys it when asked.
async function createFromTemplate(template, overrides, andDeploy) {
  const d = await gql("mutation($t: String!, $o: TemplateOverrides) { createFromTemplate(template: $t, overrides: $o) { id name version } }", { t: template, o: overrides });
  const env = d.createFromTemplate;
  if (andDeploy) await deploy(env.id, env.name);
  return env;
}
function fromTemplateCard(templates, preset, onDone) {
  const field = (id, label, help) => h("div", { class: "field" }, h("label", { for: id, text: label }),
    h("input", { id, name: id, type: "text", "aria-describedby": id + "-err" + (help ? " " + id + "-help" : "") }),
    help ? h("p", { class: "help", id: id + "-help", text: help }) : null,
    h("p", { class: "field-error", id: id + "-err", "aria-live": "polite" }));
  const sel = h("select", { id: "tpl-template", required: true }, templates.map((t) => h("option", { value: t.name, text: t.name, selected: t.name === preset })));
  const out = h("div", { "aria-live": "polite" });
  const paths = { "name": "tpl-name", "env-name": "tpl-name", "resources.ram": "tpl-ram", "resources.cpu": "tpl-cpu", "resources.gpu": "tpl-gpu", "resources.storage": "tpl-storage" };
  let andDeploy = false;
  const form = h("form", { id: "template-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    for (const id of Object.values(paths)) $("#" + id + "-err", form).textContent = "";
    const v = (id) => $("#" + id, form).value.trim() || null;
    const local = checkTemplateFields({ name: v("tpl-name"), gpu: v("tpl-gpu") });
    for (const [id, msg] of Object.entries(local)) $("#" + id + "-err", form).textContent = msg;
    if (Object.keys(local).length) { $("#" + Object.keys(local)[0], form).focus(); return; }
    const resources = { ram: v("tpl-ram"), cpu: v("tpl-cpu"), gpu: v("tpl-gpu") === null ? null : Number(v("tpl-gpu")), storage: v("tpl-storage") };
    try {
      const env = await createFromTemplate(sel.value, { name: v("tpl-name"), resources }, andDeploy);
      if (!andDeploy) { out.replaceChildren(h("p", { class: "ok", text: "Created " + env.name + "." })); onDone(); }
    } catch (e) {
      const loose = [];
      for (const f of e instanceof GqlError ? e.fields : []) {
        const id = paths[f.path.replace(/^overrides\./, "")];
        if (id) $("#" + id + "-err", form).textContent = f.message; else loose.push(f);
      }
      if (!(e instanceof GqlError) || !e.fields.length || loose.length) out.replaceChildren(h("p", { class: "error", role: "alert", text: e.message }));
    }
  } },
    h("label", { for: "tpl-template", text: "Template" }), sel,
    h("div", { class: "row fields" }, field("tpl-name", "Name (env-name)", "letters, digits, - _ ."), field("tpl-ram", "RAM", "e.g. 512M, 2G"), field("tpl-cpu", "CPU", "cores, e.g. 0.5")),
    h("div", { class: "row fields" }, field("tpl-gpu", "GPUs", "a whole number"), field("tpl-storage", "Storage", "gigabytes")),
    h("p", { class: "help", text: "Empty fields keep the template's values." }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", id: "tpl-create", text: "Create environment", onclick: () => { andDeploy = false; } }),
      h("button", { type: "submit", id: "tpl-deploy", text: "Create and deploy", onclick: () => { andDeploy = true; } })), out);
  return h("section", { class: "card", "aria-labelledby": "tpl-h" }, h("h3", { id: "tpl-h", text: "Create from a template" }),
    templates.length ? form : h("p", { class: "muted", text: "No templates yet." }));
}
on(/^\/environments(?:\?template=(.*))?$/, async (view, preset) => {
  const [list, tpls] = await Promise.all([
    pages(`query($after: String, $first: Int) { environments(after: $after, first: $first) { pageInfo { hasNextPage endCursor } nodes { id name version owner active updatedMs spec { os resources ${RES} } } } }`, {}, (d) => d.environments, 300),
    gql("{ templates { name } }"),
  ]);
  const table = h("table", { id: "env-table" },
    h("caption", { class: "muted", text: list.length + (list.length === 1 ? " environment" : " environments") }),
    h("thead", {}, h("tr", {}, ["Name", "Id", "Version", "Owner", "Resources", "Updated", ""].map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, list.map((e) => h("tr", { "data-env": e.id, "data-name": e.name },
      h("td", {}, h("a", { href: "#/environments/" + encodeURIComponent(e.id), text: e.name }), e.active ? "" : h("span", { class: "muted", text: " (inactive)" })),
      h("td", { class: "mono small muted", text: e.id }), h("td", { text: e.version }), h("td", { text: e.owner }),
      h("td", { class: "small", text: e.spec ? cores(e.spec.resources.cpuMillis) + ", " + gib(e.spec.resources.memoryBytes) + ", " + e.spec.resources.gpus + " GPU" : "" }),
      h("td", { class: "small", text: when(e.updatedMs) }),
      h("td", {}, canWrite() && e.active ? h("button", { type: "button", class: "primary deploy", "aria-label": "Deploy " + e.name, onclick: () => deploy(e.id, e.name), text: "Deploy" }) : null)))));
  const reload = (applied) => {
    if (applied) flash("Applied: " + applied.documents.map((x) => x.kind.toLowerCase() + " " + x.action.toLowerCase() + (x.version ? " (version " + x.version + ")" : "")).join(", "));
    route();
  };
  fill(view, h("h2", { text: "Environments" }),
    h("section", { class: "card" }, list.length ? table : h("p", { class: "muted", text: "No environments yet: upload one or create one from a template." })),
    canWrite() ? h("div", { class: "cols" }, uploadCard(reload), fromTemplateCard(tpls.templates, preset, reload)) : null);
});

// A line diff (longest common subsequence) of two texts.
function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length;
  const dp = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    dp[i][j] = x[i] === y[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push(["same", "  " + x[i]]); i++; j++; }
    else if (i < n && (j === m || dp[i + 1][j] >= dp[i][j + 1])) { out.push(["del", "- " + x[i]]); i++; }
    else { out.push(["add", "+ " + y[j]]); j++; }
  }
  return out;
}
const pretty = (doc) => JSON.stringify(doc, null, 2);
function specSummary(spec) {
  return h("dl", { class: "kv" },
    h("dt", { text: "env-name" }), h("dd", { text: spec.name }),
    h("dt", { text: "version label" }), h("dd", { text: spec.versionLabel }),
    h("dt", { text: "os" }), h("dd", { text: spec.os }),
    h("dt", { text: "languages" }), h("dd", { text: spec.languages.map((l) => l.name + (l.libraries.length ? " (" + l.libraries.join(", ") + ")" : "")).join("; ") || "none" }),
    h("dt", { text: "resources" }), h("dd", { text: cores(spec.resources.cpuMillis) + ", " + gib(spec.resources.memoryBytes) + " RAM, " + spec.resources.gpus + " GPU, " + gib(spec.resources.storageBytes) + " storage" }),
    h("dt", { text: "ports" }), h("dd", { text: spec.ports.map((p) => p.external + "→" + p.internal + "/" + p.protocol.toLowerCase()).join(", ") || "none" }),
    h("dt", { text: "storage" }), h("dd", { text: spec.storage.map((st) => st.target + " " + gib(st.sizeBytes) + " " + st.lifecycle.toLowerCase()).join(", ") || "none" }),
    h("dt", { text: "datasets" }), h("dd", { text: spec.datasets.flatMap((c) => c.dbs.flatMap((d) => d.datasets.map((x) => c.category + "/" + d.name + "/" + x.name + "@" + x.version))).join(", ") || "none" }),
    h("dt", { text: "node labels" }), h("dd", { text: spec.nodeLabels.map((l) => l.key + "=" + l.value).join(", ") || "none" }));
}
on(/^\/environments\/([^/?]+)$/, async (view, id) => {
  const d = await gql(`query($id: ID!) { environment(id: $id) { id name version owner active deleted createdMs updatedMs
    spec { ${SPEC} } versions { version seq timeMs spec { document } } } }`, { id });
  const env = d.environment;
  const vs = env.versions;
  const pick = (sid, sel) => h("select", { id: sid }, vs.map((v) => h("option", { value: v.version, text: "version " + v.version, selected: v.version === sel })));
  const from = pick("diff-from", Math.max(1, env.version - 1)), to = pick("diff-to", env.version);
  const diffOut = h("pre", { class: "diff", id: "diff", "aria-live": "polite" });
  const showDiff = () => {
    const a = vs.find((v) => v.version === Number(from.value)), b = vs.find((v) => v.version === Number(to.value));
    diffOut.replaceChildren(...lineDiff(pretty(a.spec.document), pretty(b.spec.document)).map(([k, t]) => h("span", { class: k, text: t })));
  };
  from.onchange = showDiff; to.onchange = showDiff;
  const editText = h("textarea", { id: "edit-text", spellcheck: "false" });
  editText.value = env.spec ? pretty(env.spec.document) : "";
  const editOut = h("div", { "aria-live": "polite" });
  const edit = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await gql("mutation($id: ID!, $v: Int!, $d: String!) { updateEnvironment(id: $id, expectedVersion: $v, document: $d) { version } }", { id, v: env.version, d: editText.value });
      flash("Saved version " + r.updateEnvironment.version);
      route();
    } catch (e) { showError(editOut, e, editText.value); }
  } }, h("label", { for: "edit-text", text: "Document (JSON or YAML)" }), editText,
    h("button", { type: "submit", class: "primary", id: "edit-save", text: "Save as a new version" }), editOut);
  const act = (label, mutation, cls) => h("button", { type: "button", class: cls, text: label, onclick: async () => {
    try { await gql(`mutation($id: ID!) { ${mutation}(id: $id) { id } }`, { id }); flash(label + ": done"); route(); }
    catch (e) { flash(label + " refused: " + e.message, true); }
  } });
  fill(view, 
    h("p", {}, h("a", { href: "#/environments", text: "← Environments" })),
    h("h2", {}, env.name, " ", h("span", { class: "muted small mono", text: env.id })),
    h("p", {}, "Version ", env.version, " · owner ", env.owner, " · ", env.active ? "active" : "inactive", env.deleted ? " · deleted" : "",
      " · created ", when(env.createdMs), " · updated ", when(env.updatedMs)),
    canWrite() && !env.deleted ? h("div", { class: "actions" },
      env.active ? h("button", { type: "button", class: "primary", text: "Deploy", onclick: () => deploy(env.id, env.name) }) : null,
      env.active ? act("Deactivate", "deactivateEnvironment") : null, act("Delete", "deleteEnvironment", "danger")) : null,
    h("div", { class: "cols" },
      h("section", { class: "card" }, h("h3", { text: "Current spec" }), env.spec ? specSummary(env.spec) : h("p", { text: "none" })),
      h("section", { class: "card" }, h("h3", { text: "Version history" }),
        h("table", {}, h("thead", {}, h("tr", {}, ["Version", "Event seq", "Written"].map((c) => h("th", { scope: "col", text: c })))),
          h("tbody", {}, vs.map((v) => h("tr", {}, h("td", { text: v.version }), h("td", { text: v.seq }), h("td", { text: when(v.timeMs) }))))))),
    h("section", { class: "card" }, h("h3", { text: "Diff between versions" }),
      h("div", { class: "row" }, h("div", {}, h("label", { for: "diff-from", text: "From" }), from), h("div", {}, h("label", { for: "diff-to", text: "To" }), to)),
      diffOut),
    canWrite() && !env.deleted ? h("section", { class: "card" }, h("h3", { text: "Edit (writes a new version)" }), edit) : null);
  showDiff();
});

// ---------- quota ----------
// The caller's usage against their quota, when the server keeps quotas.
function quotaCard() {
  const box = h("section", { class: "card quota", id: "quota", hidden: true, "aria-labelledby": "quota-h" });
  if (!app.features.quota || !canWrite()) return box;
  gql("{ me { quota { cpuMillis memoryBytes gpus deployments } usage { cpuMillis memoryBytes gpus deployments } } }").then((d) => {
    const q = d.me.quota || {}, u = d.me.usage;
    const part = (label, used, limit, fmt) => h("div", { class: "stat", "data-quota": label },
      h("div", { class: "small muted", text: label }),
      h("div", { class: "big", text: fmt(used) }),
      h("div", { class: "small muted", text: limit === null || limit === undefined ? "no limit" : "of " + fmt(limit) }),
      limit ? h("div", { class: "bar" }, h("div", { class: "alloc", style: "width:" + Math.min(100, (100 * used) / limit).toFixed(1) + "%" })) : null);
    box.replaceChildren(h("h3", { id: "quota-h", text: "Your usage" + (d.me.quota ? " and quota" : " (no quota set)") }),
      h("div", { class: "stats" }, part("CPU", u.cpuMillis, q.cpuMillis, cores), part("Memory", u.memoryBytes, q.memoryBytes, gib),
        part("GPUs", u.gpus, q.gpus, String), part("Deployments", u.deployments, q.deployments, String)));
    box.hidden = false;
  }).catch(() => {});
  return box;
}

// ---------- Templates and library catalog ----------
function docEditor(id, label, placeholder, submit, mutate) {
  const text = h("textarea", { id, spellcheck: "false", placeholder });
  const out = h("div", { "aria-live": "polite" });
  return h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    try { await mutate(text.value); flash("Saved"); route(); } catch (e) { showError(out, e, text.value); }
  } }, h("label", { for: id, text: label }), text, h("button", { type: "submit", class: "primary", text: submit }), out);
}
on(/^\/templates$/, async (view) => {
  const d = await gql(`{ templates { name owner savedMs spec { ${SPEC} } } }`);
  const admin = hasRole("ADMIN");
  fill(view, h("h2", { text: "Templates" }), quotaCard(),
    canWrite() && d.templates.length ? h("p", { class: "help", text: "Deploy starts a copy of the template as your own environment, then opens its page." }) : null,
    d.templates.length ? h("div", { class: "grid" }, d.templates.map((t) => h("article", { class: "card", "data-template": t.name },
      h("h3", { text: t.name }), h("p", { class: "small muted", text: "saved by " + t.owner + " " + when(t.savedMs) }), specSummary(t.spec),
      h("div", { class: "actions" },
        canWrite() ? h("button", { type: "button", class: "primary deploy-template", "aria-label": "Deploy " + t.name, text: "Deploy", onclick: async (ev) => {
          ev.target.disabled = true;
          try { await createFromTemplate(t.name, {}, true); } catch (e) { flash("Deploy refused: " + e.message, true); ev.target.disabled = false; }
        } }) : null,
        canWrite() ? h("a", { href: "#/environments?template=" + encodeURIComponent(t.name), text: "Customise it first" }) : null,
        admin ? h("button", { type: "button", class: "danger", text: "Delete", "aria-label": "Delete template " + t.name, onclick: async () => {
          try { await gql("mutation($n: String!) { deleteTemplate(name: $n) }", { n: t.name }); route(); } catch (e) { flash(e.message, true); }
        } }) : null)))) : h("p", { class: "muted", text: "No templates yet." }),
    admin ? h("section", { class: "card" }, h("h3", { text: "Save a template (admins)" }),
      docEditor("template-doc", "Template or environment document (JSON or YAML)", "template-name: …", "Save template",
        (doc) => gql("mutation($d: String!) { saveTemplate(document: $d) { name } }", { d: doc }))) : null);
});
on(/^\/catalog$/, async (view) => {
  const d = await gql("{ catalogs { os baseImage initSteps languages { name installationSteps libraries { name commands } } document } datasets { category sharedStorage { type device } dbs { name datasets { name version } } } }");
  const admin = hasRole("ADMIN");
  fill(view, h("h2", { text: "Library catalog" }),
    d.catalogs.length ? h("div", {}, d.catalogs.map((c) => h("section", { class: "card", "data-catalog": c.os },
      h("h3", {}, c.os, " ", h("span", { class: "muted small", text: "base image " + (c.baseImage || "default") })),
      c.initSteps.length ? h("details", {}, h("summary", { text: "Init steps (" + c.initSteps.length + ")" }), h("pre", { text: c.initSteps.join("\n") })) : null,
      h("table", {}, h("thead", {}, h("tr", {}, ["Language", "Library", "Install commands"].map((x) => h("th", { scope: "col", text: x })))),
        h("tbody", {}, c.languages.flatMap((l) => [
          h("tr", {}, h("td", { text: l.name }), h("td", { class: "muted", text: "(language)" }), h("td", { class: "mono small", text: l.installationSteps.join(" && ") })),
          ...l.libraries.map((lib) => h("tr", {}, h("td", {}), h("td", { text: lib.name }), h("td", { class: "mono small", text: lib.commands.join(" && ") })))]))),
      admin ? h("details", {}, h("summary", { text: "Edit this catalog" }),
        (() => { const f = docEditor("catalog-" + c.os, "Catalog document for " + c.os, "", "Save catalog",
          (doc) => gql("mutation($d: String!) { upsertCatalog(document: $d) { os } }", { d: doc })); $("textarea", f).value = pretty(c.document); return f; })()) : null)))
      : h("p", { class: "muted", text: "No catalog yet: deployments cannot build until one exists for their os." }),
    h("section", { class: "card" }, h("h3", { text: "Datasets" }),
      h("ul", { id: "dataset-list" }, d.datasets.flatMap((c) => c.dbs.flatMap((db) => db.datasets.map((x) => h("li", { class: "mono small", "data-shared": c.sharedStorage ? "true" : "false" },
        c.category + "/" + db.name + "/" + x.name + "@" + x.version,
        h("span", { class: "muted", text: c.sharedStorage ? " — shared storage (" + c.sharedStorage.type + " " + c.sharedStorage.device + "), every node mounts it" : " — on the nodes that hold it" })))))),
      d.datasets.length ? null : h("p", { class: "muted", text: "None registered." })),
    admin ? h("section", { class: "card" }, h("h3", { text: "Add or replace a catalog (admins)" }),
      docEditor("catalog-new", "Library catalog document (JSON or YAML)", "os: ubuntu", "Save catalog",
        (doc) => gql("mutation($d: String!) { upsertCatalog(document: $d) { os } }", { d: doc }))) : null);
});

// ---------- Audit ----------
function eventTable(rows) {
  return h("table", { id: "event-table" },
    h("thead", {}, h("tr", {}, ["Seq", "Time", "Type", "Entity", "Actor", "Hash", "Payload"].map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows.map((e) => h("tr", { "data-seq": e.seq },
      h("td", { text: e.seq }), h("td", { class: "small", text: when(e.timeMs) }), h("td", { text: e.type }),
      h("td", { class: "mono small", text: e.entity }), h("td", { class: "small", text: e.actor }),
      h("td", { class: "mono small", title: "previous " + e.prevHash, text: e.hash.slice(0, 12) + "…" }),
      h("td", {}, h("details", {}, h("summary", { text: "show" }), h("pre", { class: "small", text: pretty(e.payload) })))))));
}
function stateAtView(at) {
  return h("div", { id: "state-at-result" },
    h("p", {}, "State after event ", h("strong", { text: at.seq }), at.fromSnapshot !== null ? " (replayed from the snapshot at " + at.fromSnapshot + ")" : " (replayed from the start)",
      " · digest ", h("code", { text: at.digest.slice(0, 16) + "…" })),
    h("p", { class: "small muted", text: `${at.counts.nodes} nodes, ${at.counts.environments} environments, ${at.counts.deployments} deployments (${at.counts.pending} pending)` }),
    h("h3", { text: "Nodes then" + (at.nodes.totalCount > at.nodes.nodes.length ? " (first " + at.nodes.nodes.length + " of " + at.nodes.totalCount + ")" : "") }),
    at.nodes.nodes.length ? h("div", { class: "grid" }, at.nodes.nodes.map(nodeCard)) : h("p", { class: "muted", text: "No nodes." }),
    h("h3", { text: "Deployments then" + (at.deployments.totalCount > at.deployments.nodes.length ? " (first " + at.deployments.nodes.length + " of " + at.deployments.totalCount + ")" : "") }),
    h("table", {}, h("thead", {}, h("tr", {}, ["Environment", "Status", "Node", "Owner", "Requested", ""].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, at.deployments.nodes.map((dp) => { const r = depRow(Object.assign({}, dp, { live: false })); return r; }))));
}
on(/^\/audit$/, async (view) => {
  const input = (id, label, type, help) => h("div", {}, h("label", { for: id, text: label }), h("input", { id, type: type || "text", min: type === "number" ? 0 : null, "aria-describedby": help ? id + "-help" : null }),
    help ? h("p", { class: "help", id: id + "-help", text: help }) : null);
  const chain = h("section", { class: "card", id: "chain", "aria-live": "polite" }, h("h3", { text: "Hash chain" }), h("p", { class: "muted", text: "Verifying…" }));
  const results = h("div", { id: "events" });
  let rows = [], cursor = null, more = false;
  const filters = h("form", { class: "card", "aria-label": "Event filters", onsubmit: (ev) => { ev.preventDefault(); rows = []; cursor = null; load().catch((e) => flash(e.message, true)); } },
    h("h3", { text: "Events" }),
    h("div", { class: "row" },
      input("f-type", "Type", "text", "e.g. DeploymentScheduled"), input("f-entity", "Entity", "text", "deployment:ID or a kind: node"),
      input("f-actor", "Actor", "text", "e.g. admin:root, agent:0x…, system"),
      input("f-from", "From seq", "number"), input("f-to", "To seq", "number")),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: "Show events" })), results);
  const val = (id) => $("#" + id, filters).value.trim();
  async function load() {
    const filter = {};
    if (val("f-type")) filter.type = val("f-type");
    if (val("f-entity")) filter.entity = val("f-entity");
    if (val("f-actor")) filter.actor = val("f-actor");
    const from = val("f-from") ? Number(val("f-from")) : 1, to = val("f-to") ? Number(val("f-to")) : Infinity;
    const after = cursor || (from > 1 ? String(from - 1) : null);
    const d = await gql("query($a: String, $f: EventFilter) { events(after: $a, first: 200, filter: $f) { pageInfo { hasNextPage endCursor } nodes { seq timeMs actor correlation type entity hash prevHash payload } } }", { a: after, f: filter });
    const page = d.events.nodes.filter((e) => e.seq <= to);
    rows = rows.concat(page);
    cursor = d.events.pageInfo.endCursor;
    more = d.events.pageInfo.hasNextPage && page.length === d.events.nodes.length;
    fill(results, h("p", { class: "small muted", text: rows.length + " events shown" }), eventTable(rows),
      more ? h("button", { type: "button", text: "Load more", onclick: () => load().catch((e) => flash(e.message, true)) }) : null);
  }
  const atOut = h("div", { "aria-live": "polite" });
  const atForm = h("form", { class: "card", id: "state-at", onsubmit: async (ev) => {
    ev.preventDefault();
    const seq = Number($("#at-seq", atForm).value);
    try {
      const d = await gql(`query($s: Int!) { at(seq: $s) { seq digest fromSnapshot counts { nodes environments deployments pending }
        nodes(first: 100) { totalCount nodes { ${NODE_FIELDS} } } deployments(first: 200) { totalCount nodes { ${DEP_ROW} } } } }`, { s: seq });
      atOut.replaceChildren(stateAtView(d.at));
    } catch (e) { atOut.replaceChildren(h("p", { class: "error", role: "alert", text: e.message })); }
  } }, h("h3", { text: "State at a sequence number" }),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "at-seq", text: "Sequence number" }), h("input", { id: "at-seq", type: "number", min: 1, required: true })),
      h("div", {}, h("button", { type: "submit", class: "primary", text: "Show the state then" }))), atOut);
  fill(view, h("h2", { text: "Audit" }), chain, atForm, filters);
  const [report] = await Promise.all([gql("{ verifyChain { ok events lastSeq lastHash firstBadSeq reason } }"), load()]);
  const r = report.verifyChain;
  $("#at-seq", atForm).value = r.lastSeq;
  chain.replaceChildren(h("h3", { text: "Hash chain" }),
    r.ok ? h("p", { class: "ok", id: "chain-status", "data-ok": "true" }, "✔ Chain verified: ", r.events, " events up to seq ", r.lastSeq, r.lastHash ? h("span", { class: "mono small", text: " (last hash " + r.lastHash.slice(0, 16) + "…)" }) : null)
      : h("p", { class: "error", id: "chain-status", "data-ok": "false", role: "alert", text: "✘ Chain broken at seq " + r.firstBadSeq + ": " + r.reason + " (" + r.events + " events verified before it)" }));
});
