// DCloud console: the fleet-scale pages. The Cluster page (totals computed by the
// server, nodes in a sortable, filterable, paged table) and the Deployments list
// (the same table over deployments). The server filters, sorts and pages; the
// browser only ever holds one page. Live updates refresh the page at most every 2 s.
"use strict";

// A table over a list the server pages. `columns`: [{ label, sort (an order field or
// null), cell(row) → node, cls }]; `load({ filter, orderBy, offset, first })` →
// { totalCount, rows }; `filters`: [{ id, label, el (an input or select), toFilter(value, filter) }].
function serverTable(opts) {
  const st = { offset: 0, first: opts.pageSize || 50, orderBy: opts.orderBy || null, rows: [], total: 0, loading: null, again: false };
  const tbody = h("tbody", {});
  const caption = h("caption", { class: "muted" });
  const status = h("span", { class: "small muted", id: opts.id + "-range", "aria-live": "polite" });
  const prev = h("button", { type: "button", id: opts.id + "-prev", text: "← Previous", onclick: () => { st.offset = Math.max(0, st.offset - st.first); refresh(); } });
  const next = h("button", { type: "button", id: opts.id + "-next", text: "Next →", onclick: () => { st.offset += st.first; refresh(); } });
  const size = h("select", { id: opts.id + "-size", "aria-label": "Rows per page", onchange: () => { st.first = Number(size.value); st.offset = 0; refresh(); } },
    [25, 50, 100, 200].map((n) => h("option", { value: n, text: n + " per page", selected: n === st.first })));
  const heads = opts.columns.map((c) => {
    if (!c.sort) return h("th", { scope: "col", text: c.label });
    const btn = h("button", { type: "button", class: "sort", "data-sort": c.sort, title: c.title, text: c.label, onclick: () => {
      const same = st.orderBy && st.orderBy.field === c.sort;
      st.orderBy = { field: c.sort, desc: same ? !st.orderBy.desc : !!c.descFirst };
      st.offset = 0; refresh();
    } });
    return h("th", { scope: "col", "data-sort": c.sort }, btn);
  });
  const markSort = () => heads.forEach((th) => {
    const f = th.dataset.sort;
    if (!f) return;
    const on = st.orderBy && st.orderBy.field === f;
    th.setAttribute("aria-sort", on ? (st.orderBy.desc ? "descending" : "ascending") : "none");
  });
  let timer = null;
  const filterBar = h("div", { class: "row filters", role: "search" }, (opts.filters || []).map((f) => {
    const ev = f.el.tagName === "INPUT" && f.el.type === "text" ? "input" : "change";
    f.el.addEventListener(ev, () => { clearTimeout(timer); timer = setTimeout(() => { st.offset = 0; refresh(); }, ev === "input" ? 250 : 0); });
    return h("div", {}, h("label", { for: f.el.id, text: f.label }), f.el);
  }));
  const table = h("table", { id: opts.id, class: "data" }, caption, h("thead", {}, h("tr", {}, heads)), tbody);
  const el = h("div", { class: "server-table" }, filterBar, h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, prev, status, next, size));
  function filter() {
    const f = {};
    for (const x of opts.filters || []) x.toFilter(x.el.type === "checkbox" ? x.el.checked : x.el.value.trim(), f);
    return f;
  }
  // One load at a time; a change during a load loads again after it.
  async function refresh() {
    if (st.loading) { st.again = true; return st.loading; }
    st.loading = (async () => {
      try {
        const res = await opts.load({ filter: filter(), orderBy: st.orderBy, offset: st.offset, first: st.first });
        if (res.rows.length === 0 && st.offset > 0 && res.totalCount > 0) { st.offset = Math.max(0, Math.floor((res.totalCount - 1) / st.first) * st.first); st.loading = null; return refresh(); }
        st.rows = res.rows; st.total = res.totalCount;
        tbody.replaceChildren(...res.rows.map(opts.row));
        if (!res.rows.length) tbody.append(h("tr", {}, h("td", { colspan: opts.columns.length, class: "muted", text: opts.empty || "Nothing matches." })));
        const from = res.rows.length ? st.offset + 1 : 0;
        status.textContent = from ? `${from.toLocaleString()}–${(st.offset + res.rows.length).toLocaleString()} of ${res.totalCount.toLocaleString()}` : `0 of ${res.totalCount.toLocaleString()}`;
        caption.textContent = opts.caption ? opts.caption(res.totalCount) : "";
        prev.disabled = st.offset === 0;
        next.disabled = st.offset + res.rows.length >= res.totalCount;
        markSort();
        el.dataset.ready = "true";
      } catch (e) {
        tbody.replaceChildren(h("tr", {}, h("td", { colspan: opts.columns.length, class: "error", role: "alert", text: "Could not load: " + e.message })));
      } finally {
        st.loading = null;
      }
      if (st.again) { st.again = false; await refresh(); }
    })();
    return st.loading;
  }
  return { el, refresh, state: st };
}

// Calls `f` at most once per `ms` (trailing): many live events → one refresh.
function throttle(f, ms) {
  let timer = null, last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => { timer = null; last = Date.now(); f(); }, wait);
  };
}
const sel = (id, label, options) => h("select", { id, "aria-label": label }, options.map(([v, t]) => h("option", { value: v, text: t })));

// ---------- Cluster ----------
const TOTALS = `seq nodes alive ready draining lost allocatable ${RES} allocated ${RES} free ${RES} usage { cpuMillis memoryBytes }
  deployments liveDeployments pendingDeployments runningDeployments`;
const NODE_ROW = `id hostname os health state draining lastHeartbeatMs lastSeenMs allocatable ${RES} allocated ${RES} usage { cpuMillis memoryBytes } deploymentIds`;

function miniBar(used, cap, text) {
  const pct = cap > 0 ? Math.min(100, (100 * used) / cap) : 0;
  return h("div", { class: "mini" }, h("div", { class: "bar", role: "img", "aria-label": text }, h("div", { class: "alloc", style: "width:" + pct.toFixed(1) + "%" })),
    h("span", { class: "small", text }));
}
function totalsCard(t) {
  const me = app.me.role === "USER";
  return h("section", { class: "card", "aria-labelledby": "totals-h", id: "totals" },
    h("h3", { id: "totals-h", text: "Totals" }),
    h("div", { class: "stats" },
      stat("Nodes", t.nodes.toLocaleString(), `${t.alive.toLocaleString()} alive · ${t.ready.toLocaleString()} ready · ${t.draining} draining · ${t.lost} lost`, "node-count"),
      stat(me ? "Your deployments" : "Deployments", t.deployments.toLocaleString(), `${t.liveDeployments.toLocaleString()} live · ${t.runningDeployments.toLocaleString()} running · ${t.pendingDeployments.toLocaleString()} waiting`, "dep-count"),
      stat("Free now", cores(t.free.cpuMillis), `${gib(t.free.memoryBytes)} · ${t.free.gpus} GPU · ${gib(t.free.storageBytes)} disk`, "free-now")),
    resourceBars(t.allocatable, t.allocated, t.usage), legend());
}
function stat(label, value, sub, id) {
  return h("div", { class: "stat", id }, h("div", { class: "small muted", text: label }), h("div", { class: "big", text: value }), h("div", { class: "small muted", text: sub }));
}
function nodeRow(n) {
  const a = n.allocatable, u = n.allocated;
  return h("tr", { "data-node": n.id },
    h("td", {}, h("strong", { text: n.hostname }), h("div", { class: "mono small muted", text: n.id })),
    h("td", {}, badge(n.state), n.draining && n.state !== "DRAINING" ? h("div", { class: "small muted", text: "draining" }) : null),
    h("td", {}, miniBar(u.cpuMillis, a.cpuMillis, (u.cpuMillis / 1000).toFixed(1) + " / " + (a.cpuMillis / 1000).toFixed(0) + " cores")),
    h("td", {}, miniBar(u.memoryBytes, a.memoryBytes, gib(u.memoryBytes) + " / " + gib(a.memoryBytes))),
    h("td", { text: u.gpus + " / " + a.gpus }),
    h("td", { text: n.deploymentIds.length }),
    h("td", { class: "small", title: "last logged heartbeat: " + when(n.lastHeartbeatMs), text: ago(n.lastSeenMs || n.lastHeartbeatMs) }));
}
on(/^\/cluster$/, async (view) => {
  const t = (await gql(`{ clusterTotals { ${TOTALS} } }`)).clusterTotals;
  const search = h("input", { id: "node-search", type: "text", placeholder: "hostname, id or label=value" });
  const state = sel("node-state", "State", [["", "any"], ["READY", "ready"], ["DRAINING", "draining"], ["ENGINE_DOWN", "engine down"], ["LOST", "lost"]]);
  const table = serverTable({
    id: "node-table", pageSize: 50, orderBy: { field: "HOSTNAME", desc: false }, empty: "No node matches.",
    columns: [{ label: "Node", sort: "HOSTNAME" }, { label: "State", sort: "STATE" }, { label: "CPU allocated", sort: "CPU_FREE", title: "Sorts by free CPU, least free first" },
      { label: "Memory allocated", sort: "MEMORY_FREE", title: "Sorts by free memory, least free first" }, { label: "GPUs allocated", sort: "GPUS_FREE", title: "Sorts by free GPUs, least free first" },
      { label: "Deployments", sort: "DEPLOYMENTS", descFirst: true }, { label: "Last heard from", sort: "LAST_HEARTBEAT", descFirst: true }],
    filters: [{ el: search, label: "Search", toFilter: (v, f) => { if (v) f.search = v; } },
      { el: state, label: "State", toFilter: (v, f) => { if (v) f.state = v; } }],
    caption: (n) => n.toLocaleString() + (n === 1 ? " node matches" : " nodes match"),
    row: nodeRow,
    load: async ({ filter, orderBy, offset, first }) => {
      const d = await gql(`query($f: NodeFilter, $o: NodeOrder, $off: Int, $n: Int) { nodes(filter: $f, orderBy: $o, offset: $off, first: $n) { totalCount nodes { ${NODE_ROW} } } }`,
        { f: filter, o: orderBy, off: offset, n: first });
      return { totalCount: d.nodes.totalCount, rows: d.nodes.nodes };
    },
  });
  const totals = h("div", {}, totalsCard(t));
  fill(view, h("h2", { text: "Cluster" }), totals,
    h("section", { class: "card", "aria-labelledby": "nodes-h" }, h("h3", { id: "nodes-h", text: "Nodes" }),
      t.nodes ? table.el : h("p", { class: "muted", text: "No node has registered yet." })));
  if (t.nodes) await table.refresh();
  const refresh = throttle(async () => {
    try {
      const nt = (await gql(`{ clusterTotals { ${TOTALS} } }`)).clusterTotals;
      totals.replaceChildren(totalsCard(nt));
      if (!t.nodes && nt.nodes) { t.nodes = nt.nodes; route(); return; }
      await table.refresh();
    } catch (_) { /* the next tick tries again */ }
  }, 2000);
  // From the seq the totals were read at: nothing between the two is missed.
  app.cleanup.push(app.live.subscribe(`subscription($after: Int) { nodeUpdates(after: $after) { seq nodeId } }`, { after: t.seq },
    refresh, async () => refresh(), 5000));
  const clock = setInterval(refresh, 15000); // keeps "ago" honest
  app.cleanup.push(() => clearInterval(clock));
});

// ---------- Deployments ----------
const DEP_ROW = "id environmentId environmentName environmentVersion owner status live nodeId nodeHostname requestedMs build { step steps }";
const STATUSES = ["PENDING", "SCHEDULED", "BUILDING", "CREATED", "RUNNING", "STOPPING", "EXITED", "OOM_KILLED", "FAILED", "STOPPED", "LOST"];

function depRow(dp) {
  return h("tr", { "data-deployment": dp.id },
    h("td", {}, h("a", { href: "#/deployments/" + encodeURIComponent(dp.id), text: (dp.environmentName || "environment " + dp.environmentId) }),
      h("span", { class: "muted small", text: " v" + dp.environmentVersion }), h("div", { class: "mono small muted", text: dp.id })),
    h("td", { class: "status" }, badge(dp.status), dp.status === "BUILDING" && dp.build ? h("span", { class: "small muted", text: " " + buildText(dp.build) }) : null),
    h("td", {}, dp.nodeHostname ? h("span", { title: dp.nodeId, text: dp.nodeHostname }) : h("span", { class: "muted", text: "—" })),
    h("td", { text: dp.owner }),
    h("td", { class: "small", title: when(dp.requestedMs), text: ago(dp.requestedMs) }),
    h("td", {}, canWrite() && dp.live && dp.status !== "STOPPING" ? h("button", { type: "button", class: "danger", "aria-label": "Stop " + (dp.environmentName || dp.id), text: "Stop", onclick: () => stopDep(dp) }) : null));
}
// Stops after the user confirms in a dialog naming what stops.
async function stopDep(dp) {
  const ok = await confirmDialog("Stop " + (dp.environmentName || "this deployment") + "?",
    "The container " + (dp.nodeHostname ? "on " + dp.nodeHostname + " " : "") + "is stopped and its temporary storage is lost. This cannot be undone.", "Stop it");
  if (!ok) return false;
  try {
    const d = await gql("mutation($id: ID!) { stop(deploymentId: $id) { id status } }", { id: dp.id });
    flash("Stop requested: " + d.stop.status.toLowerCase());
    return true;
  } catch (e) { flash("Stop refused: " + e.message, true); return false; }
}
// A modal confirmation; resolves true when confirmed.
function confirmDialog(title, text, yes) {
  return new Promise((resolve) => {
    const dlg = h("dialog", { id: "confirm", "aria-labelledby": "confirm-h" },
      h("h3", { id: "confirm-h", text: title }), h("p", { text }),
      h("form", { method: "dialog", class: "actions" },
        h("button", { value: "cancel", id: "confirm-cancel", text: "Cancel" }),
        h("button", { value: "yes", class: "danger", id: "confirm-yes", text: yes })));
    dlg.addEventListener("close", () => { dlg.remove(); resolve(dlg.returnValue === "yes"); });
    document.body.append(dlg);
    dlg.showModal();
    $("#confirm-cancel", dlg).focus();
  });
}
// Deploy one of the caller's environments with a chosen placement policy (the first
// 200 active ones by name; templates and the Environments page reach the rest).
async function deployForm() {
  const d = await gql("{ environments(first: 200) { totalCount nodes { id name version active } } }");
  const envs = d.environments.nodes.filter((e) => e.active).sort((a, b) => a.name.localeCompare(b.name));
  const hint = h("p", { class: "help" }, "Or start from a ", h("a", { href: "#/templates", text: "template" }), ".");
  if (!envs.length) return h("section", { class: "card" }, h("p", {}, "You have no environment yet: deploy a ", h("a", { href: "#/templates", text: "template" }), " or upload one on the ", h("a", { href: "#/environments", text: "Environments" }), " page."));
  const envSel = h("select", { id: "deploy-env" }, envs.map((e) => h("option", { value: e.id, text: e.name + " (version " + e.version + ")" })));
  const policy = h("select", { id: "deploy-policy" }, h("option", { value: "SPREAD", text: "spread (most available node)" }), h("option", { value: "BIN_PACK", text: "bin-pack (fullest node that fits)" }));
  return h("form", { class: "card", id: "deploy-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await gql("mutation($e: String!, $p: PlacementPolicy) { deploy(environment: $e, policy: $p) { id status } }", { e: envSel.value, p: policy.value });
      location.hash = "#/deployments/" + encodeURIComponent(r.deploy.id);
    } catch (e) { flash("Deploy refused: " + e.message, true); }
  } }, h("div", { class: "row" }, h("div", {}, h("label", { for: "deploy-env", text: "Environment" }), envSel),
    h("div", {}, h("label", { for: "deploy-policy", text: "Placement" }), policy),
    h("div", {}, h("button", { type: "submit", class: "primary", text: "Deploy" }))), hint);
}
on(/^\/deployments$/, async (view) => {
  const t = (await gql(`{ clusterTotals { seq deployments } }`)).clusterTotals;
  const search = h("input", { id: "dep-search", type: "text", placeholder: "environment, owner, node or id" });
  const status = sel("dep-status-filter", "Status", [["", "any"]].concat(STATUSES.map((s) => [s, s.toLowerCase().replace("_", " ")])));
  const liveOnly = h("input", { id: "dep-live", type: "checkbox" });
  const table = serverTable({
    id: "dep-table", pageSize: 50, orderBy: { field: "REQUESTED", desc: true }, empty: "No deployment matches.",
    columns: [{ label: "Environment", sort: "ENVIRONMENT" }, { label: "Status", sort: "STATUS" }, { label: "Node", sort: "NODE" },
      { label: "Owner", sort: "OWNER" }, { label: "Requested", sort: "REQUESTED", descFirst: true }, { label: "" }],
    filters: [{ el: search, label: "Search", toFilter: (v, f) => { if (v) f.search = v; } },
      { el: status, label: "Status", toFilter: (v, f) => { if (v) f.status = v; } },
      { el: liveOnly, label: "Live only", toFilter: (v, f) => { if (v) f.live = true; } }],
    caption: (n) => n.toLocaleString() + (n === 1 ? " deployment matches" : " deployments match") + "; updates live",
    row: depRow,
    load: async ({ filter, orderBy, offset, first }) => {
      const d = await gql(`query($f: DeploymentFilter, $o: DeploymentOrder, $off: Int, $n: Int) { deployments(filter: $f, orderBy: $o, offset: $off, first: $n) { totalCount nodes { ${DEP_ROW} } } }`,
        { f: filter, o: orderBy, off: offset, n: first });
      return { totalCount: d.deployments.totalCount, rows: d.deployments.nodes };
    },
  });
  fill(view, h("h2", { text: "Deployments" }), quotaCard(),
    canWrite() ? await deployForm() : null,
    h("section", { class: "card" }, table.el));
  await table.refresh();
  const refresh = throttle(() => table.refresh(), 2000);
  app.cleanup.push(app.live.subscribe(`subscription($after: Int) { deploymentUpdates(after: $after) { seq deploymentId } }`, { after: t.seq },
    refresh, async () => refresh(), 3000));
});
