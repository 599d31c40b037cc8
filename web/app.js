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
  return g >= 100 ? g.toFixed(0) + " GiB" : g >= 1 ? g.toFixed(1) + " GiB" : (bytes / 1048576).toFixed(0) + " MiB";
}
const cores = (m) => (m / 1000).toFixed(m % 1000 === 0 ? 0 : 2) + " cores";
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
        if (sub) { this.subs.delete(msg.id); sub.startPolling(); }
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
    this.ws.send(JSON.stringify({ id, type: "subscribe", payload: { query: sub.query, variables: sub.variables } }));
  }
  // Subscribes `query`; `onData` gets each result. While no websocket carries it,
  // `poll` runs every `every` ms instead. Returns a function that ends both.
  subscribe(query, variables, onData, poll, every) {
    const id = String(this.next++);
    let timer = null;
    const sub = {
      query, variables, onData,
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
const app = { token: sessionStorage.getItem("dcloud.token") || "", me: null, live: new Live(), cleanup: [] };

async function signIn(token) {
  app.token = token;
  const data = await gql("{ me { name role label nodeId } }");
  app.me = data.me;
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
  for (const [re, fn] of routes) {
    const m = path.match(re);
    if (m) {
      fill(view, h("p", { class: "muted", text: "Loading…" }));
      try { await fn(view, ...m.slice(1).map(decodeURIComponent)); }
      catch (e) { fill(view, h("p", { class: "error", role: "alert", text: "Could not load: " + e.message })); }
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

// ---------- Cluster ----------
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
function renderCluster(view, nodes) {
  const sum = (f) => nodes.reduce((a, n) => a + f(n), 0);
  const cap = { cpuMillis: sum((n) => n.allocatable.cpuMillis), memoryBytes: sum((n) => n.allocatable.memoryBytes), gpus: sum((n) => n.allocatable.gpus), storageBytes: sum((n) => n.allocatable.storageBytes) };
  const alloc = { cpuMillis: sum((n) => n.allocated.cpuMillis), memoryBytes: sum((n) => n.allocated.memoryBytes), gpus: sum((n) => n.allocated.gpus), storageBytes: sum((n) => n.allocated.storageBytes) };
  const usage = { cpuMillis: sum((n) => n.usage.cpuMillis), memoryBytes: sum((n) => n.usage.memoryBytes) };
  const alive = nodes.filter((n) => n.health === "ALIVE").length;
  fill(view, 
    h("h2", { text: "Cluster" }),
    h("section", { class: "card", "aria-labelledby": "totals-h" },
      h("h3", { id: "totals-h", text: "Totals" }),
      h("p", { id: "node-count" }, nodes.length + " nodes, " + alive + " alive"),
      resourceBars(cap, alloc, usage), legend()),
    nodes.length ? h("div", { class: "grid", id: "nodes" }, nodes.map(nodeCard)) : h("p", { class: "muted", text: "No node has registered yet." }));
}
async function loadNodes() {
  return pages(`query($after: String, $first: Int) { nodes(after: $after, first: $first) { pageInfo { hasNextPage endCursor } nodes { ${NODE_FIELDS} } } }`, {}, (d) => d.nodes, 100);
}
on(/^\/cluster$/, async (view) => {
  const { seq } = (await gql("{ stateDigest { seq } }")).stateDigest;
  let nodes = await loadNodes();
  renderCluster(view, nodes);
  const refresh = async () => { nodes = await loadNodes(); renderCluster(view, nodes); };
  // From the seq read before the list: nothing between the two is missed.
  app.cleanup.push(app.live.subscribe(`subscription($after: Int) { nodeUpdates(after: $after) { seq nodeId node { ${NODE_FIELDS} } } }`, { after: seq },
    (d) => {
      const u = d.nodeUpdates;
      const i = nodes.findIndex((n) => n.id === u.nodeId);
      if (i >= 0) nodes[i] = u.node; else nodes.push(u.node);
      renderCluster(view, nodes);
    }, refresh, 3000));
  const clock = setInterval(() => renderCluster(view, nodes), 10000); // keeps "ago" honest
  app.cleanup.push(() => clearInterval(clock));
});

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
function annotatedDoc(text, fields) {
  const lines = text.split("\n");
  const at = new Map();
  const loose = [];
  for (const f of fields) {
    const i = f.path ? lineOfPath(lines, f.path) : -1;
    if (i >= 0) { if (!at.has(i)) at.set(i, []); at.get(i).push(f); } else loose.push(f);
  }
  return h("div", {},
    h("ul", { class: "errors", "aria-label": "Problems found" },
      fields.map((f) => h("li", {}, h("code", { text: f.path || "(document)" }), ": ", f.message))),
    loose.length ? h("div", {}, loose.map((f) => h("p", { class: "field-error", "data-path": f.path, text: (f.path ? f.path + ": " : "") + f.message }))) : null,
    h("div", { class: "doc", role: "region", "aria-label": "The document with its errors" },
      lines.map((line, i) => h("div", { class: "line" + (at.has(i) ? " has-error" : "") },
        h("span", { class: "ln", text: i + 1 }), h("code", { text: line }),
        h("span", {}, (at.get(i) || []).map((f) => h("span", { class: "field-error", "data-path": f.path, text: f.path + ": " + f.message })))))));
}
function showError(box, e, text) {
  if (e instanceof GqlError && e.fields.length) {
    box.replaceChildren(h("p", { class: "error", role: "alert", text: "The document was refused: nothing was changed." }),
      text !== undefined ? annotatedDoc(text, e.fields) : h("ul", { class: "errors" }, e.fields.map((f) => h("li", { class: "field-error", "data-path": f.path, text: f.path + ": " + f.message }))));
  } else box.replaceChildren(h("p", { class: "error", role: "alert", text: e.message }));
}

// ---------- Environments ----------
const SPEC = `name versionLabel os isActive languages { name libraries } resources ${RES}
  ports { external internal protocol } storage { target sizeBytes lifecycle } nodeLabels { key value }
  datasets { category dbs { name datasets { name version } } } document`;

async function deploy(envId) {
  try {
    const d = await gql("mutation($e: String!) { deploy(environment: $e) { id status } }", { e: envId });
    flash("Deployment " + d.deploy.id + " requested: " + d.deploy.status);
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
function fromTemplateCard(templates, preset, onDone) {
  const field = (id, label, help) => h("div", {}, h("label", { for: id, text: label }),
    h("input", { id, name: id, type: "text", "aria-describedby": id + "-err" + (help ? " " + id + "-help" : "") }),
    help ? h("p", { class: "help", id: id + "-help", text: help }) : null,
    h("p", { class: "field-error", id: id + "-err", "aria-live": "polite" }));
  const sel = h("select", { id: "tpl-template", required: true }, templates.map((t) => h("option", { value: t.name, text: t.name, selected: t.name === preset })));
  const out = h("div", { "aria-live": "polite" });
  const paths = { "name": "tpl-name", "env-name": "tpl-name", "resources.ram": "tpl-ram", "resources.cpu": "tpl-cpu", "resources.gpu": "tpl-gpu", "resources.storage": "tpl-storage" };
  const form = h("form", { id: "template-form", onsubmit: async (ev) => {
    ev.preventDefault();
    for (const id of Object.values(paths)) $("#" + id + "-err", form).textContent = "";
    const v = (id) => $("#" + id, form).value.trim() || null;
    const resources = { ram: v("tpl-ram"), cpu: v("tpl-cpu"), gpu: v("tpl-gpu") === null ? null : Number(v("tpl-gpu")), storage: v("tpl-storage") };
    try {
      const d = await gql("mutation($t: String!, $o: TemplateOverrides) { createFromTemplate(template: $t, overrides: $o) { id name version } }",
        { t: sel.value, o: { name: v("tpl-name"), resources } });
      out.replaceChildren(h("p", { class: "ok", text: "Created " + d.createFromTemplate.name + " (" + d.createFromTemplate.id + ")" }));
      onDone();
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
    h("div", { class: "row top" }, field("tpl-name", "Name (env-name)"), field("tpl-ram", "RAM", "e.g. 512M, 2G"), field("tpl-cpu", "CPU", "cores, e.g. 0.5")),
    h("div", { class: "row top" }, field("tpl-gpu", "GPUs"), field("tpl-storage", "Storage", "gigabytes")),
    h("p", { class: "help", text: "Empty fields keep the template's values." }),
    h("button", { type: "submit", class: "primary", text: "Create environment" }), out);
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
      h("td", { class: "mono", text: e.id }), h("td", { text: e.version }), h("td", { text: e.owner }),
      h("td", { class: "small", text: e.spec ? cores(e.spec.resources.cpuMillis) + ", " + gib(e.spec.resources.memoryBytes) + ", " + e.spec.resources.gpus + " GPU" : "" }),
      h("td", { class: "small", text: when(e.updatedMs) }),
      h("td", {}, canWrite() && e.active ? h("button", { type: "button", class: "primary deploy", "aria-label": "Deploy " + e.name, onclick: () => deploy(e.id), text: "Deploy" }) : null)))));
  const reload = (applied) => {
    if (applied) flash("Applied: " + applied.documents.map((x) => x.id + " " + x.action.toLowerCase()).join(", "));
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
      env.active ? h("button", { type: "button", class: "primary", text: "Deploy", onclick: () => deploy(env.id) }) : null,
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

// ---------- Deployments ----------
const DEP_ROW = "id environmentId environmentName environmentVersion owner status live nodeId requestedMs build { step steps }";
const DEP_FULL = `${DEP_ROW} policy requestedSeq nodeAgentId need ${RES} gpus ports { external internal protocol } image imageReady imageCached
  history { seq timeMs status } exitCode containerId failure { step command message }
  pendingReasons { reason count }
  placement { nodeId seq scoreMilli candidates runnersUp { nodeId scoreMilli } rejected { reason count } }`;

async function stopDep(id) {
  try {
    const d = await gql("mutation($id: ID!) { stop(deploymentId: $id) { id status } }", { id });
    flash("Stop requested: " + d.stop.status);
  } catch (e) { flash("Stop refused: " + e.message, true); }
}
function buildText(b) { return b ? "build step " + b.step + " of " + b.steps : ""; }
function depRow(dp) {
  return h("tr", { "data-deployment": dp.id },
    h("td", {}, h("a", { href: "#/deployments/" + encodeURIComponent(dp.id), class: "mono", text: dp.id })),
    h("td", { text: (dp.environmentName || dp.environmentId) + " v" + dp.environmentVersion }),
    h("td", { class: "status" }, badge(dp.status), dp.status === "BUILDING" && dp.build ? h("span", { class: "small muted", text: " " + buildText(dp.build) }) : null),
    h("td", { class: "mono small", text: dp.nodeId || "—" }), h("td", { text: dp.owner }),
    h("td", { class: "small", text: when(dp.requestedMs) }),
    h("td", {}, canWrite() && dp.live ? h("button", { type: "button", class: "danger", "aria-label": "Stop " + dp.id, text: "Stop", onclick: () => stopDep(dp.id) }) : null));
}
on(/^\/deployments$/, async (view) => {
  const load = () => pages(`query($after: String, $first: Int) { deployments(after: $after, first: $first) { pageInfo { hasNextPage endCursor } nodes { ${DEP_ROW} } } }`, {}, (d) => d.deployments, 300);
  const { seq } = (await gql("{ stateDigest { seq } }")).stateDigest;
  let deps = await load();
  const envs = canWrite() ? (await pages("query($after: String, $first: Int) { environments(after: $after, first: $first) { pageInfo { hasNextPage endCursor } nodes { id name active } } }", {}, (d) => d.environments, 1000)).filter((e) => e.active) : [];
  const tbody = h("tbody", {});
  const render = () => tbody.replaceChildren(...deps.slice().reverse().map(depRow));
  render();
  const envSel = h("select", { id: "deploy-env" }, envs.map((e) => h("option", { value: e.id, text: e.name + " (" + e.id + ")" })));
  const policy = h("select", { id: "deploy-policy" }, h("option", { value: "SPREAD", text: "spread (most available)" }), h("option", { value: "BIN_PACK", text: "bin-pack" }));
  fill(view, h("h2", { text: "Deployments" }),
    canWrite() && envs.length ? h("form", { class: "card row", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const d = await gql("mutation($e: String!, $p: PlacementPolicy) { deploy(environment: $e, policy: $p) { id status } }", { e: envSel.value, p: policy.value });
        location.hash = "#/deployments/" + encodeURIComponent(d.deploy.id);
      } catch (e) { flash("Deploy refused: " + e.message, true); }
    } }, h("div", {}, h("label", { for: "deploy-env", text: "Environment" }), envSel),
      h("div", {}, h("label", { for: "deploy-policy", text: "Placement" }), policy),
      h("div", {}, h("button", { type: "submit", class: "primary", text: "Deploy" }))) : null,
    h("table", { id: "dep-table" }, h("caption", { class: "muted", text: "Newest first; status updates live" }),
      h("thead", {}, h("tr", {}, ["Deployment", "Environment", "Status", "Node", "Owner", "Requested", ""].map((c) => h("th", { scope: "col", text: c })))), tbody));
  app.cleanup.push(app.live.subscribe(`subscription($after: Int) { deploymentUpdates(after: $after) { seq deploymentId deployment { ${DEP_ROW} } } }`, { after: seq },
    (d) => {
      const dp = d.deploymentUpdates.deployment;
      const i = deps.findIndex((x) => x.id === dp.id);
      if (i >= 0) deps[i] = dp; else deps.push(dp);
      render();
    }, async () => { deps = await load(); render(); }, 2000));
});

// Heartbeat history of one container: [{t, cpu, mem}] from the node's logged heartbeats.
async function usageHistory(dp) {
  const points = [];
  let after = String(dp.requestedSeq);
  for (let page = 0; page < 10; page++) {
    const d = await gql("query($a: String, $f: EventFilter) { events(after: $a, first: 500, filter: $f) { pageInfo { hasNextPage endCursor } nodes { seq timeMs payload } } }",
      { a: after, f: { type: "NodeHeartbeat", entity: "node:" + dp.nodeId } });
    for (const ev of d.events.nodes) {
      const c = (ev.payload.containers || []).find((x) => (x.deployment_id || x.deploymentId) === dp.id);
      if (c) points.push({ t: ev.timeMs, cpu: c.usage.cpu_millis ?? c.usage.cpuMillis, mem: c.usage.memory_bytes ?? c.usage.memoryBytes });
    }
    if (!d.events.pageInfo.hasNextPage || !d.events.pageInfo.endCursor) break;
    after = d.events.pageInfo.endCursor;
  }
  return points;
}
// An inline SVG line chart of CPU (cores, left axis) and memory (right axis).
function usageChart(points, need) {
  const W = 1000, H = 300, L = 56, R = 72, T = 20, B = 28;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", id: "usage-chart",
    "aria-label": points.length ? `CPU and memory of the container over ${points.length} heartbeats` : "No heartbeat has reported this container yet" });
  if (!points.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No heartbeat has reported this container yet."));
    return svg;
  }
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const cpuMax = Math.max(need.cpuMillis, ...points.map((p) => p.cpu), 1);
  const memMax = Math.max(need.memoryBytes, ...points.map((p) => p.mem), 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v, max) => H - B - (v / max) * (H - T - B);
  for (let k = 0; k <= 4; k++) {
    const yy = T + (k * (H - T - B)) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#e3e7ec" }));
    svg.append(s("text", { x: L - 6, y: yy + 4, "text-anchor": "end" }, ((cpuMax * (4 - k)) / 4000).toFixed(2)));
    svg.append(s("text", { x: W - R + 6, y: yy + 4 }, gib((memMax * (4 - k)) / 4)));
  }
  const line = (f, max, color, name) => s("polyline", { fill: "none", stroke: color, "stroke-width": 2, "data-series": name,
    points: points.map((p) => x(p.t).toFixed(1) + "," + y(f(p), max).toFixed(1)).join(" ") });
  svg.append(line((p) => p.cpu, cpuMax, "#1f5fbf", "cpu"), line((p) => p.mem, memMax, "#c0582b", "memory"));
  for (const p of points) svg.append(s("circle", { cx: x(p.t).toFixed(1), cy: y(p.cpu, cpuMax).toFixed(1), r: 2.5, fill: "#1f5fbf" }));
  svg.append(s("text", { x: L, y: H - 8 }, new Date(t0).toLocaleTimeString()), s("text", { x: W - R, y: H - 8, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  svg.append(s("text", { x: 4, y: 12 }, "CPU (cores)"), s("text", { x: W - 4, y: 12, "text-anchor": "end" }, "Memory"));
  return svg;
}
function renderDeployment(view, dp, points) {
  const p = dp.placement;
  fill(view, 
    h("p", {}, h("a", { href: "#/deployments", text: "← Deployments" })),
    h("h2", {}, "Deployment ", h("span", { class: "mono", text: dp.id })),
    h("p", {}, "Status ", h("span", { id: "dep-status", "data-status": dp.status }, badge(dp.status)),
      " · environment ", h("a", { href: "#/environments/" + encodeURIComponent(dp.environmentId), text: (dp.environmentName || dp.environmentId) }), " version ", dp.environmentVersion,
      " · owner ", dp.owner, " · policy ", dp.policy.toLowerCase()),
    canWrite() && dp.live ? h("div", { class: "actions" }, h("button", { type: "button", class: "danger", id: "dep-stop", text: "Stop", onclick: () => stopDep(dp.id) })) : null,
    h("div", { class: "cols" },
      h("section", { class: "card", "aria-labelledby": "tl-h" }, h("h3", { id: "tl-h", text: "Timeline" }),
        h("ol", { class: "timeline", id: "timeline" }, dp.history.map((e) => h("li", {}, badge(e.status), " ", when(e.timeMs), h("span", { class: "muted small", text: " (event " + e.seq + ")" })))),
        h("h3", { text: "Build" }),
        dp.build ? h("div", {}, h("label", { for: "build-progress", text: buildText(dp.build) }),
          h("progress", { id: "build-progress", max: dp.build.steps, value: dp.build.step }, buildText(dp.build))) : h("p", { class: "muted", text: dp.imageReady ? "Image ready" + (dp.imageCached ? " (cached on the node)" : "") : "Not started" }),
        dp.image ? h("p", { class: "small mono", text: "image " + dp.image }) : null,
        dp.failure ? h("p", { class: "error", role: "alert" }, "Failed", dp.failure.step !== null ? " at step " + dp.failure.step : "", dp.failure.command ? " (" + dp.failure.command + ")" : "", ": ", dp.failure.message) : null,
        dp.exitCode !== null ? h("p", { text: "Exit code " + dp.exitCode }) : null),
      h("section", { class: "card", "aria-labelledby": "pl-h" }, h("h3", { id: "pl-h", text: "Placement" }),
        p ? h("div", { id: "placement" }, h("dl", { class: "kv" },
          h("dt", { text: "node" }), h("dd", { class: "mono", text: p.nodeId || "—" }),
          h("dt", { text: "score" }), h("dd", { text: (p.scoreMilli / 1000).toFixed(3) }),
          h("dt", { text: "candidates" }), h("dd", { text: p.candidates }),
          h("dt", { text: "decided at" }), h("dd", { text: "event " + p.seq }),
          h("dt", { text: "runners-up" }), h("dd", { text: p.runnersUp.map((r) => r.nodeId + " (" + (r.scoreMilli / 1000).toFixed(3) + ")").join(", ") || "none" })),
          h("h3", { text: "Rejected nodes" }),
          p.rejected.length ? h("table", { id: "rejected" }, h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Reason" }), h("th", { scope: "col", text: "Nodes" }))),
            h("tbody", {}, p.rejected.map((r) => h("tr", {}, h("td", { text: r.reason }), h("td", { text: r.count }))))) : h("p", { class: "muted", text: "No node was rejected." }))
          : h("p", { class: "muted", text: "Not placed yet." }),
        dp.pendingReasons.length ? h("div", {}, h("h3", { text: "Waiting because" }), h("ul", {}, dp.pendingReasons.map((r) => h("li", { text: r.reason + ": " + r.count + " nodes" })))) : null,
        h("dl", { class: "kv" }, h("dt", { text: "books" }), h("dd", { text: cores(dp.need.cpuMillis) + ", " + gib(dp.need.memoryBytes) + ", " + dp.need.gpus + " GPU, " + gib(dp.need.storageBytes) }),
          h("dt", { text: "GPUs" }), h("dd", { class: "mono small", text: dp.gpus.join(", ") || "none" }),
          h("dt", { text: "ports" }), h("dd", { text: dp.ports.map((x) => x.external + "→" + x.internal).join(", ") || "none" }),
          h("dt", { text: "container" }), h("dd", { class: "mono small", text: dp.containerId || "—" })))),
    h("section", { class: "card", "aria-labelledby": "ch-h" }, h("h3", { id: "ch-h", text: "Container CPU and memory (from heartbeats)" }),
      usageChart(points, dp.need),
      h("p", { class: "legend" }, h("span", {}, h("span", { class: "swatch", style: "background:#1f5fbf" }), "CPU"), h("span", {}, h("span", { class: "swatch", style: "background:#c0582b" }), "memory"))));
}
on(/^\/deployments\/([^/]+)$/, async (view, id) => {
  const load = async () => (await gql(`query($id: ID!) { deployment(id: $id) { ${DEP_FULL} } }`, { id })).deployment;
  const { seq } = (await gql("{ stateDigest { seq } }")).stateDigest;
  let dp = await load();
  let points = dp.nodeId ? await usageHistory(dp) : [];
  renderDeployment(view, dp, points);
  let chartAt = Date.now();
  const refreshChart = async () => {
    if (dp.nodeId && Date.now() - chartAt > 5000) { chartAt = Date.now(); points = await usageHistory(dp); renderDeployment(view, dp, points); }
  };
  app.cleanup.push(app.live.subscribe(`subscription($id: ID, $after: Int) { deploymentUpdates(id: $id, after: $after) { seq status deployment { ${DEP_FULL} } } }`, { id, after: seq },
    (d) => { dp = d.deploymentUpdates.deployment; renderDeployment(view, dp, points); },
    async () => { dp = await load(); renderDeployment(view, dp, points); }, 2000));
  const timer = setInterval(() => refreshChart().catch(() => {}), 5000);
  app.cleanup.push(() => clearInterval(timer));
});

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
  fill(view, h("h2", { text: "Templates" }),
    d.templates.length ? h("div", { class: "grid" }, d.templates.map((t) => h("article", { class: "card", "data-template": t.name },
      h("h3", { text: t.name }), h("p", { class: "small muted", text: "saved by " + t.owner + " " + when(t.savedMs) }), specSummary(t.spec),
      h("div", { class: "actions" },
        canWrite() ? h("a", { href: "#/environments?template=" + encodeURIComponent(t.name), text: "Create an environment from it" }) : null,
        admin ? h("button", { type: "button", class: "danger", text: "Delete", "aria-label": "Delete template " + t.name, onclick: async () => {
          try { await gql("mutation($n: String!) { deleteTemplate(name: $n) }", { n: t.name }); route(); } catch (e) { flash(e.message, true); }
        } }) : null)))) : h("p", { class: "muted", text: "No templates yet." }),
    admin ? h("section", { class: "card" }, h("h3", { text: "Save a template (admins)" }),
      docEditor("template-doc", "Template or environment document (JSON or YAML)", "template-name: …", "Save template",
        (doc) => gql("mutation($d: String!) { saveTemplate(document: $d) { name } }", { d: doc }))) : null);
});
on(/^\/catalog$/, async (view) => {
  const d = await gql("{ catalogs { os baseImage initSteps languages { name installationSteps libraries { name commands } } document } datasets { category dbs { name datasets { name version } } } }");
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
      h("ul", {}, d.datasets.flatMap((c) => c.dbs.flatMap((db) => db.datasets.map((x) => h("li", { class: "mono small", text: c.category + "/" + db.name + "/" + x.name + "@" + x.version }))))),
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
    h("table", {}, h("thead", {}, h("tr", {}, ["Deployment", "Environment", "Status", "Node", "Owner", "Requested", ""].map((c) => h("th", { scope: "col", text: c })))),
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
