// DCloud console: one deployment's page. Status and timeline (live), its endpoint
// URLs, placement, the usage chart (a point per heartbeat), the log panel
// (`deploymentLogs` subscription) and a terminal (websocket `/exec`). Panels the
// server does not offer are hidden with a note saying so.
"use strict";

const DEP_FULL = `${DEP_ROW} policy requestedSeq nodeAgentId need ${RES} gpus ports { external internal protocol } image imageReady imageCached
  history { seq timeMs status } exitCode containerId failure { step command message }
  pendingReasons { reason count } volumes { target usedBytes sizeBytes enforced over }
  placement { nodeId seq scoreMilli candidates runnersUp { nodeId scoreMilli } rejected { reason count } }`;
const ENDPOINTS = "endpoints { name protocol internalPort externalPort url ready }";
const depFields = () => DEP_FULL + (app.features.endpoints ? " " + ENDPOINTS : "");
function buildText(b) { return b ? "build step " + b.step + " of " + b.steps : ""; }

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
async function usagePoints(id) {
  const d = await gql("query($id: ID!) { deployment(id: $id) { recentUsage { timeMs cpuMillis memoryBytes } } }", { id });
  return d.deployment.recentUsage.map((u) => ({ t: u.timeMs, cpu: u.cpuMillis, mem: u.memoryBytes }));
}

function endpointList(dp) {
  if (!app.features.endpoints) return h("p", { class: "muted", id: "endpoints-absent", text: "This server does not report endpoint URLs yet; the ports below are what the node publishes." });
  if (!dp.endpoints.length) return h("p", { class: "muted", text: "This environment publishes no port." });
  return h("ul", { class: "endpoints", id: "endpoints" }, dp.endpoints.map((e) => h("li", { "data-endpoint": e.name, "data-ready": e.ready ? "true" : "false" },
    h("strong", { text: e.name }), " ",
    !dp.live ? h("span", { class: "badge s-STOPPED", text: "closed" }) : e.ready ? badge("READY") : h("span", { class: "badge s-PENDING", text: "starting" }), " ",
    e.url && dp.status === "RUNNING" ? h("a", { href: e.url, target: "_blank", rel: "noopener", class: "mono endpoint-url", text: e.url })
      : h("span", { class: "mono small", text: e.url || "port " + e.externalPort + "/" + e.protocol }),
    h("span", { class: "small muted", text: " (container port " + e.internalPort + ")" }))));
}

function placementCard(dp, hosts) {
  const p = dp.placement;
  const host = (id) => (hosts[id] ? hosts[id] : id);
  return h("section", { class: "card", "aria-labelledby": "pl-h" }, h("h3", { id: "pl-h", text: "Placement" }),
    p ? h("div", { id: "placement" }, h("dl", { class: "kv" },
      h("dt", { text: "node" }), h("dd", {}, p.nodeId ? h("span", { title: p.nodeId, text: host(p.nodeId) }) : "—"),
      h("dt", { text: "score" }), h("dd", { text: (p.scoreMilli / 1000).toFixed(3) }),
      h("dt", { text: "candidates" }), h("dd", { text: p.candidates }),
      h("dt", { text: "decided at" }), h("dd", { text: "event " + p.seq }),
      h("dt", { text: "runners-up" }), h("dd", { text: p.runnersUp.map((r) => host(r.nodeId) + " (" + (r.scoreMilli / 1000).toFixed(3) + ")").join(", ") || "none" })),
      h("h3", { text: "Rejected nodes" }),
      p.rejected.length ? h("table", { id: "rejected" }, h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Reason" }), h("th", { scope: "col", text: "Nodes" }))),
        h("tbody", {}, p.rejected.map((r) => h("tr", {}, h("td", { text: r.reason }), h("td", { text: r.count }))))) : h("p", { class: "muted", text: "No node was rejected." }))
      : h("p", { class: "muted", text: "Not placed yet." }),
    dp.pendingReasons.length ? h("div", {}, h("h3", { text: "Waiting because" }), h("ul", {}, dp.pendingReasons.map((r) => h("li", { text: r.reason + ": " + r.count + " nodes" })))) : null,
    h("dl", { class: "kv" }, h("dt", { text: "books" }), h("dd", { text: cores(dp.need.cpuMillis) + ", " + gib(dp.need.memoryBytes) + ", " + dp.need.gpus + " GPU, " + gib(dp.need.storageBytes) }),
      h("dt", { text: "GPUs" }), h("dd", { class: "mono small", text: dp.gpus.join(", ") || "none" }),
      h("dt", { text: "ports" }), h("dd", { text: dp.ports.map((x) => x.external + "→" + x.internal).join(", ") || "none" }),
      h("dt", { text: "container" }), h("dd", { class: "mono small", text: dp.containerId || "—" })));
}

// Each storage target's use against its size, as its node last measured it (shown
// once the node reported it: about a minute after the deployment starts).
function storageCard(dp) {
  const mib = (b) => (b / 1048576).toFixed(b < 10485760 ? 1 : 0) + " MiB";
  const rows = (dp.volumes || []).map((v) => h("li", { "data-target": v.target, "data-over": v.over ? "true" : "false" },
    h("span", { class: "mono", text: v.target }), " ",
    v.sizeBytes > 0 ? h("meter", { min: 0, max: v.sizeBytes, high: v.sizeBytes * 0.9, value: Math.min(v.usedBytes, v.sizeBytes), title: mib(v.usedBytes) + " of " + mib(v.sizeBytes) }) : null, " ",
    mib(v.usedBytes), v.sizeBytes > 0 ? " of " + mib(v.sizeBytes) + (v.enforced ? " (enforced by the engine)" : " (watched, not enforced)") : " (no size given)",
    v.over ? h("strong", { class: "error", text: " over its size" }) : null));
  return h("section", { class: "card", "aria-labelledby": "st-h" }, h("h3", { id: "st-h", text: "Storage" }),
    h("ul", { id: "storage" }, rows));
}

function deploymentTop(dp, hosts) {
  return h("div", {},
    h("p", {}, h("a", { href: "#/deployments", text: "← Deployments" })),
    h("h2", {}, dp.environmentName || "Deployment", " ", h("span", { class: "muted small mono", title: "deployment id", text: dp.id })),
    h("p", {}, "Status ", h("span", { id: "dep-status", "data-status": dp.status }, badge(dp.status)),
      " · environment ", h("a", { href: "#/environments/" + encodeURIComponent(dp.environmentId), text: (dp.environmentName || dp.environmentId) }), " version ", dp.environmentVersion,
      " · on ", dp.nodeHostname ? h("span", { id: "dep-node", title: dp.nodeId, text: dp.nodeHostname }) : h("span", { class: "muted", text: "no node yet" }),
      " · owner ", dp.owner, " · policy ", dp.policy.toLowerCase()),
    canWrite() && dp.live && dp.status !== "STOPPING" ? h("div", { class: "actions" }, h("button", { type: "button", class: "danger", id: "dep-stop", text: "Stop", onclick: () => stopDep(dp) })) : null,
    h("section", { class: "card", "aria-labelledby": "ep-h" }, h("h3", { id: "ep-h", text: "Open" }), endpointList(dp)),
    (dp.volumes || []).length ? storageCard(dp) : null,
    h("div", { class: "cols" },
      h("section", { class: "card", "aria-labelledby": "tl-h" }, h("h3", { id: "tl-h", text: "Timeline" }),
        h("ol", { class: "timeline", id: "timeline" }, dp.history.map((e) => h("li", {}, badge(e.status), " ", when(e.timeMs), h("span", { class: "muted small", text: " (event " + e.seq + ")" })))),
        h("h3", { text: "Build" }),
        dp.build ? h("div", {}, h("label", { for: "build-progress", text: buildText(dp.build) }),
          h("progress", { id: "build-progress", max: dp.build.steps, value: dp.build.step }, buildText(dp.build))) : h("p", { class: "muted", text: dp.imageReady ? "Image ready" + (dp.imageCached ? " (cached on the node)" : "") : "Not started" }),
        dp.image ? h("p", { class: "small mono", text: "image " + dp.image }) : null,
        dp.failure ? h("p", { class: "error", role: "alert" }, "Failed", dp.failure.step !== null ? " at step " + dp.failure.step : "", dp.failure.command ? " (" + dp.failure.command + ")" : "", ": ", dp.failure.message) : null,
        dp.exitCode !== null ? h("p", { text: "Exit code " + dp.exitCode }) : null),
      placementCard(dp, hosts)));
}

// The log panel: opens a `deploymentLogs` subscription while it is open.
function logPanel(dp) {
  const out = h("pre", { class: "logs", id: "log-lines", "aria-live": "off", tabindex: 0 });
  const note = h("p", { class: "small muted", id: "log-note", "aria-live": "polite" });
  let stop = null, count = 0;
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  const start = () => {
    if (stop) return;
    out.replaceChildren(); count = 0;
    note.textContent = "Connecting…";
    stop = app.live.subscribe("subscription($id: ID!, $tail: Int, $follow: Boolean) { deploymentLogs(id: $id, tail: $tail, follow: $follow) { stream line timeMs } }",
      { id: dp.id, tail: 500, follow: true },
      (d) => {
        const l = d.deploymentLogs;
        if (++count > 5000) out.firstChild.remove();
        out.append(h("span", { class: "log-" + l.stream.toLowerCase(), text: l.line.replace(/\n$/, "") + "\n" }));
        note.textContent = count + " lines";
        if (follow.checked) out.scrollTop = out.scrollHeight;
      }, null, 0,
      { restart: () => { out.replaceChildren(); count = 0; },
        error: (e) => { note.textContent = "Logs unavailable: " + e; stop = null; }, complete: () => { note.textContent = count + " lines; the stream has ended (the container is gone)."; stop = null; } });
    if (app.live.failed) note.textContent = "Logs stream over a websocket, which this browser could not open.";
  };
  const details = h("details", { class: "card", id: "logs", ontoggle: () => { if (details.open) start(); else if (stop) { stop(); stop = null; } } },
    h("summary", {}, h("h3", { class: "inline", text: "Logs" })),
    app.features.logs ? h("div", {}, h("div", { class: "actions" }, h("label", { class: "inline" }, follow, " follow"),
      h("button", { type: "button", text: "Clear", onclick: () => { out.replaceChildren(); count = 0; } })), out, note)
      : h("p", { class: "muted", id: "logs-absent", text: "This server does not stream container logs yet." }));
  app.cleanup.push(() => { if (stop) stop(); });
  return details;
}

// The terminal panel: a shell in the container over the `/exec` websocket.
function terminalPanel(dp) {
  const screen = h("pre", { class: "term", id: "term", "aria-label": "Terminal" });
  const note = h("p", { class: "small muted", id: "term-note", "aria-live": "polite" });
  let ws = null, term = null;
  const close = () => { if (ws) { const w = ws; ws = null; w.onclose = null; w.close(); } };
  const open = () => {
    close();
    term = term || new Term(screen, 100, 26);
    term.reset(); term.draw();
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/exec";
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    note.textContent = "Connecting…";
    ws.onopen = () => {
      ws.send(JSON.stringify({ token: app.token, deployment: dp.id, cmd: ["/bin/sh"], tty: true, cols: term.cols, rows: term.rows }));
      note.textContent = "Connected: /bin/sh in the container. Click the terminal to type.";
      screen.dataset.connected = "true";
      screen.focus();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
      let m; try { m = JSON.parse(ev.data); } catch (_) { return; }
      if (m.exit !== undefined) note.textContent = "The shell exited with code " + m.exit + ".";
      else if (m.error) note.textContent = "Refused: " + m.error + (m.code ? " (" + m.code + ")" : "");
    };
    ws.onclose = () => { screen.dataset.connected = "false"; if (!/exited|Refused/.test(note.textContent)) note.textContent = "Disconnected."; ws = null; };
    term.onData = (text) => { if (ws && ws.readyState === 1) ws.send(new TextEncoder().encode(text)); };
  };
  const mayExec = app.me.role === "ADMIN" || (app.me.role === "USER" && dp.owner === app.me.name);
  const details = h("details", { class: "card", id: "shell", ontoggle: () => { if (details.open && !ws && mayExec && app.features.exec && dp.status === "RUNNING") open(); } },
    h("summary", {}, h("h3", { class: "inline", text: "Terminal" })),
    !app.features.exec ? h("p", { class: "muted", id: "term-absent", text: "This server does not offer a shell into containers yet." })
      : !mayExec ? h("p", { class: "muted", text: "Only the deployment's owner and admins may open a shell." })
        : dp.status !== "RUNNING" ? h("p", { class: "muted", text: "The shell opens while the container runs." })
          : h("div", {}, screen, h("div", { class: "actions" }, note, h("button", { type: "button", id: "term-reconnect", text: "Reconnect", onclick: open }))));
  app.cleanup.push(close);
  return details;
}

on(/^\/deployments\/([^/]+)$/, async (view, id) => {
  const load = async () => (await gql(`query($id: ID!) { deployment(id: $id) { ${depFields()} } }`, { id })).deployment;
  const { seq } = (await gql("{ clusterTotals { seq } }")).clusterTotals;
  let dp = await load();
  const hosts = {};
  const lookupHosts = async () => {
    const ids = dp.placement ? [dp.placement.nodeId, ...dp.placement.runnersUp.map((r) => r.nodeId)].filter((x) => x && !hosts[x]) : [];
    if (!ids.length) return;
    const q = "{ " + ids.map((x, i) => `n${i}: nodes(filter: { search: ${JSON.stringify(x)} }, first: 1) { nodes { id hostname } }`).join(" ") + " }";
    try { const d = await gql(q); for (const k of Object.keys(d)) for (const n of d[k].nodes) hosts[n.id] = n.hostname; } catch (_) { /* ids stay */ }
  };
  await lookupHosts();
  let points = dp.nodeId ? await usagePoints(id) : [];
  const top = h("div", { id: "dep-top" });
  const chart = h("div", {});
  const statusKey = (x) => x.status + (x.endpoints ? JSON.stringify(x.endpoints) : "");
  let shownKey = statusKey(dp);
  let logs = logPanel(dp), shell = terminalPanel(dp);
  const panels = h("div", {}, logs, shell);
  const renderChart = () => chart.replaceChildren(usageChart(points, dp.need));
  fill(view, top, h("section", { class: "card", "aria-labelledby": "ch-h" }, h("h3", { id: "ch-h", text: "Container CPU and memory (a point per heartbeat)" }),
    chart, h("p", { class: "legend" }, h("span", {}, h("span", { class: "swatch", style: "background:#1f5fbf" }), "CPU"), h("span", {}, h("span", { class: "swatch", style: "background:#c0582b" }), "memory"))), panels);
  top.replaceChildren(deploymentTop(dp, hosts));
  renderChart();
  const update = async (next) => {
    dp = next;
    await lookupHosts();
    top.replaceChildren(deploymentTop(dp, hosts));
    // The terminal depends on the status: rebuild it only when the status changes.
    if (statusKey(dp) !== shownKey) {
      shownKey = statusKey(dp);
      if (dp.status !== "RUNNING" || !shell.open) { const fresh = terminalPanel(dp); shell.replaceWith(fresh); shell = fresh; }
    }
  };
  app.cleanup.push(app.live.subscribe(`subscription($id: ID, $after: Int) { deploymentUpdates(id: $id, after: $after) { seq status } }`, { id, after: seq },
    () => load().then(update).catch(() => {}),
    async () => update(await load()), 2000));
  // Endpoints turn ready without an event of their own: look again while they are not.
  const timer = setInterval(async () => {
    try {
      if (dp.nodeId && dp.live) { points = await usagePoints(id); renderChart(); }
      if (app.features.endpoints && dp.status === "RUNNING" && dp.endpoints.some((e) => !e.ready)) update(await load());
    } catch (_) { /* next tick */ }
  }, 3000);
  app.cleanup.push(() => clearInterval(timer));
});
