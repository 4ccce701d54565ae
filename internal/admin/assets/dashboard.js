// marsmesh dashboard: polls this MARS's admin endpoint and redraws. Every
// value is set with textContent, never parsed as HTML.
"use strict";
(function () {
  const EVERY_MS = 1500;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) {
      if (k === null || k === undefined) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }
  function rate(v) {
    if (v === undefined || v === null) return "–";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }
  function bytesRate(v) {
    if (v === undefined || v === null) return "–";
    const u = ["B/s", "KB/s", "MB/s", "GB/s"]; let i = 0;
    while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " " + u[i];
  }
  function ago(ms) {
    if (ms < 1000) return "now";
    const s = Math.round(ms / 1000);
    if (s < 120) return s + " s ago";
    return Math.round(s / 60) + " min ago";
  }
  function statusCell(status) {
    return el("span", { class: "status " + status }, el("span", { class: "dot" }), status);
  }
  function values(v) {
    const keys = Object.keys(v || {}).filter(k => !k.startsWith("_mesh.")).sort(); // the mesh's own: see topicsTable
    if (keys.length === 0) return el("span", { class: "muted" }, "–");
    return el("span", { class: "mono" }, keys.map(k => k + "=" + JSON.stringify(v[k])).join("  "));
  }
  function card(k, v) { return el("div", { class: "card" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k)); }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  // sparkline draws a node's message and RPC rates over the last minutes
  // (stats.history: [unix ms, messages/s, RPCs/s], oldest first), both on
  // the scale of the larger.
  function sparkline(hist) {
    const W = 120, H = 26;
    if (!hist || hist.length < 2) return el("span", { class: "muted" }, "–");
    const t0 = hist[0][0], span = Math.max(hist[hist.length - 1][0] - t0, 1);
    let top = 0;
    for (const h of hist) top = Math.max(top, h[1], h[2]);
    top = top || 1;
    const line = i => hist.map(h => ((h[0] - t0) / span * (W - 2) + 1).toFixed(1) + "," + (H - 2 - h[i] / top * (H - 4)).toFixed(1)).join(" ");
    const last = hist[hist.length - 1];
    const box = svg("svg", { class: "spark", width: W, height: H, viewBox: "0 0 " + W + " " + H, "data-points": hist.length });
    const title = svg("title");
    title.textContent = "last " + Math.round(span / 60000 * 10) / 10 + " min: messages " + rate(last[1]) + "/s, RPCs " + rate(last[2]) +
      "/s (peak " + rate(top) + "/s)";
    box.append(title, svg("polyline", { class: "msgs", points: line(1) }), svg("polyline", { class: "rpcs", points: line(2) }));
    return box;
  }
  function replicaCell(n) {
    if (n.stats && n.stats.mars) return el("span", { class: "mono" }, n.stats.mars);
    return el("span", { class: "muted" }, n.status === "online" ? "another replica" : "–");
  }

  function nodesTable(nodes) {
    if (nodes.length === 0) return el("div", { class: "empty" }, "no nodes");
    const head = el("tr", null, el("th", null, "Status"), el("th", null, "Role"), el("th", null, "Mesh address"),
      el("th", null, "Endpoint"), el("th", null, "Values"), el("th", { class: "num" }, "Msgs out/s"),
      el("th", { class: "num" }, "Msgs in/s"), el("th", { class: "num" }, "RPC/s"), el("th", { class: "num" }, "RPC err/s"),
      el("th", { class: "num" }, "Datagrams in / out /s"), el("th", { class: "num" }, "Bytes in / out /s"),
      el("th", null, el("span", { class: "key msgs" }, "msgs/s"), " ", el("span", { class: "key rpcs" }, "RPC/s"), " · 3 min"),
      el("th", null, "MARS replica"), el("th", { class: "num" }, "Last report"));
    const body = el("tbody");
    let type = null;
    for (const n of nodes) {
      if (n.type !== type) {
        type = n.type;
        const count = nodes.filter(x => x.type === type);
        const on = count.filter(x => x.status === "online").length;
        body.append(el("tr", { class: "typehead" }, el("td", { colspan: "14" },
          "type " + (type || "(none)") + " — " + on + " of " + count.length + " online")));
      }
      const r = (n.status === "online" && n.stats && n.stats.rates) || {}; // no stale rates for a silent node
      body.append(el("tr", { class: "node " + n.status, "data-addr": n.addr, "data-status": n.status, "data-type": n.type },
        el("td", null, statusCell(n.status)), el("td", null, n.role || "–"), el("td", { class: "mono" }, n.addr),
        el("td", { class: "mono" }, n.endpoint || "–"), el("td", null, values(n.values)),
        el("td", { class: "num" }, rate(r.messagesSent)), el("td", { class: "num" }, rate(r.messagesReceived)),
        el("td", { class: "num" }, rate(r.rpcs)), el("td", { class: "num" }, rate(r.rpcErrors)),
        el("td", { class: "num" }, r.datagramsIn === undefined ? "–" : rate(r.datagramsIn) + " / " + rate(r.datagramsOut)),
        el("td", { class: "num" }, r.bytesIn === undefined ? "–" : bytesRate(r.bytesIn) + " / " + bytesRate(r.bytesOut)),
        el("td", { class: "hist" }, sparkline(n.status === "online" && n.stats && n.stats.history)),
        el("td", null, replicaCell(n)), el("td", { class: "num" }, ago(n.lastSeenMs))));
    }
    return el("table", null, el("thead", null, head), body);
  }

  // replicasTable lists every MARS address the nodes reporting here know,
  // with how many of them use it and how many found it silent or failed.
  function replicasTable(app, self) {
    const by = {};
    let reporting = 0;
    for (const n of app.nodes) {
      if (n.status !== "online" || !n.stats || !n.stats.replicas) continue;
      reporting++;
      for (const r of n.stats.replicas) {
        const e = by[r.addr] || (by[r.addr] = { addr: r.addr, "in use": 0, silent: 0, failed: 0, standby: 0 });
        e[r.state] = (e[r.state] || 0) + 1;
      }
    }
    const addrs = Object.keys(by).sort();
    if (addrs.length === 0) return el("div", { class: "empty" }, "no node reports here yet");
    const body = el("tbody");
    for (const a of addrs) {
      const e = by[a];
      const state = e["in use"] > 0 ? "online" : (e.failed + e.silent > 0 ? "offline" : "standby");
      const word = e["in use"] > 0 ? "in use" : (e.failed + e.silent > 0 ? "failed" : "standby");
      body.append(el("tr", { class: "replica", "data-addr": a, "data-state": word },
        el("td", null, statusCell(state === "standby" ? "gone" : state)), el("td", null, word),
        el("td", { class: "mono" }, a + (self.has(a) ? " (this one)" : "")),
        el("td", { class: "num" }, e["in use"] + e.silent), el("td", { class: "num" }, e.failed + e.silent)));
    }
    return el("div", null, el("table", null, el("thead", null, el("tr", null, el("th", null, "Status"), el("th", null, "State"),
      el("th", null, "MARS address"), el("th", { class: "num" }, "Nodes using it"), el("th", { class: "num" }, "Nodes that lost it"))), body),
      el("div", { class: "muted note" }, "As the " + reporting + " node(s) reporting to this replica see them; nodes served by another replica report there."));
  }

  // peerMatrix: a row per node reporting here, a column per node of the
  // app; each cell is that row's session with that column's node: smoothed
  // RTT and retransmitted segments.
  const MATRIX_MAX = 24;
  function peerMatrix(app) {
    const cols = app.nodes.filter(n => n.status === "online").map(n => n.addr).slice(0, MATRIX_MAX);
    const rows = app.nodes.filter(n => n.status === "online" && n.stats && n.stats.peers && n.stats.peers.length > 0).slice(0, MATRIX_MAX);
    if (rows.length === 0) return el("div", { class: "empty" }, "no sessions between nodes reported yet");
    const head = el("tr", null, el("th", null, "from ↓ to →"), ...cols.map(c => el("th", { class: "mono col" }, c)));
    const body = el("tbody");
    for (const n of rows) {
      const peers = {};
      for (const p of n.stats.peers) peers[p.addr] = p;
      const tr = el("tr", { class: "peerrow", "data-addr": n.addr }, el("th", { class: "mono" }, n.addr));
      for (const c of cols) {
        const p = peers[c];
        if (c === n.addr) { tr.append(el("td", { class: "self" }, "·")); continue; }
        if (!p) { tr.append(el("td", { class: "none" }, "")); continue; }
        const cls = "peer" + (p.rttMs >= 200 ? " bad" : p.rttMs >= 50 ? " slow" : "") + (p.retransmits > 0 ? " retx" : "");
        const td = el("td", { class: cls, "data-to": c, title: n.addr + " → " + c + ": RTT " + p.rttMs + " ms, " + p.retransmits + " segments retransmitted" },
          el("div", null, p.rttMs < 1 ? "<1 ms" : Math.round(p.rttMs) + " ms"), el("div", { class: "retx" }, p.retransmits + " rtx"));
        tr.append(td);
      }
      body.append(tr);
    }
    return el("div", { class: "matrix" }, el("table", null, el("thead", null, head), body),
      el("div", { class: "muted note" }, "RTT: KCP's smoothed round trip (1 ms resolution). rtx: data segments sent again on that session since it started." +
        (app.nodes.length > MATRIX_MAX ? " The first " + MATRIX_MAX + " nodes by type and address." : "")));
  }

  // topicsTable lists the topic patterns the online nodes subscribe to,
  // from each node's interest value (_mesh.topics: a version line, then
  // "pattern" or "pattern group" per line), with the app's pub-sub rates.
  function topicsTable(app) {
    const by = {};
    let pub = 0, deliv = 0, reporting = 0;
    for (const n of app.nodes) {
      if (n.status !== "online") continue;
      const r = n.stats && n.stats.rates;
      if (r && r.topicsPublished !== undefined) { pub += r.topicsPublished; deliv += r.topicsDelivered; reporting++; }
      const v = n.values && n.values["_mesh.topics"];
      if (typeof v !== "string") continue;
      for (const line of v.split("\n").slice(1)) {
        const sp = line.indexOf(" ");
        const pattern = sp < 0 ? line : line.slice(0, sp), group = sp < 0 ? "" : line.slice(sp + 1);
        const e = by[pattern] || (by[pattern] = { plain: new Set(), groups: {} });
        if (group === "") e.plain.add(n.addr); else (e.groups[group] || (e.groups[group] = new Set())).add(n.addr);
      }
    }
    const patterns = Object.keys(by).sort();
    const note = el("div", { class: "muted note" }, "Published " + rate(pub) + "/s, delivered to subscriptions " + rate(deliv) +
      "/s (" + reporting + " node(s) reporting).");
    if (patterns.length === 0) return el("div", null, el("div", { class: "empty" }, "no subscriptions"), note);
    const body = el("tbody");
    for (const p of patterns) {
      const e = by[p];
      const groups = Object.keys(e.groups).sort().map(g => g + " (" + e.groups[g].size + ")").join(", ");
      body.append(el("tr", { class: "topic", "data-pattern": p, "data-subscribers": e.plain.size },
        el("td", { class: "mono" }, p), el("td", { class: "num" }, e.plain.size), el("td", { class: "mono" }, groups || "–")));
    }
    return el("div", null, el("table", null, el("thead", null, el("tr", null, el("th", null, "Pattern"),
      el("th", { class: "num" }, "Subscriber nodes"), el("th", null, "Queue groups (members)"))), body), note);
  }

  function sharedTable(shared) {
    const keys = Object.keys(shared || {}).sort();
    if (keys.length === 0) return el("div", { class: "empty" }, "no shared data");
    const body = el("tbody");
    for (const k of keys) body.append(el("tr", { class: "shared", "data-key": k }, el("td", { class: "mono" }, k), el("td", { class: "num" }, shared[k])));
    return el("table", null, el("thead", null, el("tr", null, el("th", null, "Key"), el("th", { class: "num" }, "Value"))), body);
  }

  // kvTable lists the first keys of an app's key-value store.
  function kvTable(kv) {
    if (!kv || kv.entries.length === 0) return el("div", { class: "empty" }, "no keys");
    const body = el("tbody");
    for (const e of kv.entries) body.append(el("tr", { class: "kvkey", "data-key": e.key },
      el("td", { class: "mono" }, e.key), el("td", { class: "mono" }, e.value === "" && e.size > 0 ? "(binary)" : e.value),
      el("td", { class: "num" }, e.size), el("td", { class: "num" }, e.rev), el("td", { class: "num" }, e.ttlMs < 0 ? "–" : Math.ceil(e.ttlMs / 1000) + " s")));
    return el("div", null, el("table", null, el("thead", null, el("tr", null, el("th", null, "Key"), el("th", null, "Value"),
      el("th", { class: "num" }, "Bytes"), el("th", { class: "num" }, "Revision"), el("th", { class: "num" }, "TTL left"))), body),
      el("div", { class: "muted note" }, kv.keys + " keys, " + kv.bytes + " bytes" + (kv.truncated ? "; the first " + kv.entries.length + " shown" : "")));
  }

  // leaseTable lists an app's leases: holder, fencing token, TTL.
  function leaseTable(leases) {
    if (!leases || leases.length === 0) return el("div", { class: "empty" }, "no leases");
    const body = el("tbody");
    for (const l of leases) body.append(el("tr", { class: "lease", "data-key": l.key, "data-holder": l.holder },
      el("td", { class: "mono" }, l.key), el("td", { class: "mono" }, l.holder), el("td", { class: "num" }, l.token),
      el("td", { class: "num" }, (l.ttlMs / 1000) + " s"), el("td", { class: "num" }, l.leftMs < 0 ? "–" : (l.leftMs / 1000).toFixed(1) + " s"),
      el("td", null, ago(Date.now() - Date.parse(l.granted)))));
    return el("table", null, el("thead", null, el("tr", null, el("th", null, "Lease"), el("th", null, "Holder"),
      el("th", { class: "num" }, "Token"), el("th", { class: "num" }, "TTL"), el("th", { class: "num" }, "Left"), el("th", null, "Granted"))), body);
  }

  function offlineTable(app) {
    const rows = [];
    for (const n of app.nodes) if (n.status === "offline") rows.push({ status: "offline", addr: n.addr, type: n.type, role: n.role, when: ago(n.lastSeenMs), note: "listed offline" });
    const now = Date.now();
    for (const g of app.gone || []) rows.push({ status: "gone", addr: g.addr, type: g.type, role: g.role, when: ago(now - Date.parse(g.lastSeen)), note: "removed " + ago(now - Date.parse(g.removed)) });
    if (rows.length === 0) return el("div", { class: "empty" }, "none in the last minutes");
    const body = el("tbody");
    for (const r of rows) body.append(el("tr", { class: "recent", "data-addr": r.addr, "data-status": r.status },
      el("td", null, statusCell(r.status)), el("td", { class: "mono" }, r.addr), el("td", null, r.type), el("td", null, r.role || "–"),
      el("td", null, r.when), el("td", { class: "muted" }, r.note)));
    return el("table", null, el("thead", null, el("tr", null, el("th", null, "Status"), el("th", null, "Mesh address"),
      el("th", null, "Type"), el("th", null, "Role"), el("th", null, "Last report"), el("th", null, ""))), body);
  }

  function render(status, nodes, shared, kv, leases) {
    document.getElementById("mars").textContent = "MARS " + status.addr + " · incarnation " + status.incarnation +
      " · " + (status.version ? "version " + status.version.version + " rev " + String(status.version.revision).slice(0, 12) : "") +
      " · up " + status.uptimeSec + " s";
    const sharedBy = {}, kvBy = {}, leasesBy = {};
    for (const a of shared.apps) sharedBy[a.app] = a.shared;
    for (const a of kv.apps) kvBy[a.app] = a;
    for (const a of leases.apps) leasesBy[a.app] = a.leases;
    let kvKeys = 0, leaseCount = 0;
    for (const a of kv.apps) kvKeys += a.keys;
    for (const a of leases.apps) leaseCount += a.leases.length;
    for (const name of Object.keys(kvBy).concat(Object.keys(leasesBy))) {
      if (!nodes.apps.some(a => a.app === name)) nodes.apps.push({ app: name, nodes: [], guests: 0, gone: [] });
    }
    let online = 0, offline = 0, keys = 0, msgs = 0, rpcs = 0;
    for (const a of nodes.apps) {
      for (const n of a.nodes) {
        if (n.status === "online") online++; else if (n.status === "offline") offline++;
        const r = n.stats && n.stats.rates;
        if (r && n.status === "online") { msgs += r.messagesSent; rpcs += r.rpcs; }
      }
      keys += Object.keys(sharedBy[a.app] || {}).length;
    }
    const summary = document.getElementById("summary");
    summary.replaceChildren(card("apps", nodes.apps.length), card("nodes online", online), card("nodes offline", offline),
      card("shared keys", keys), card("KV keys", kvKeys), card("leases", leaseCount), card("messages/s", rate(msgs)), card("RPCs/s", rate(rpcs)));
    // This replica's address as nodes reporting here name it (it may
    // listen on 0.0.0.0).
    const self = new Set([status.addr]);
    for (const a of nodes.apps) for (const n of a.nodes) if (n.stats && n.stats.mars) self.add(n.stats.mars);
    const apps = document.getElementById("apps");
    const frag = document.createDocumentFragment();
    if (nodes.apps.length === 0) frag.append(el("div", { class: "app empty" }, "MARS lists no nodes yet."));
    for (const a of nodes.apps) {
      frag.append(el("section", { class: "app", "data-app": a.app },
        el("h2", null, "app " + (a.app === "" ? "(default)" : a.app) + " ", el("span", { class: "muted" },
          "· " + a.nodes.length + " nodes · " + a.guests + " guests")),
        el("h3", null, "Nodes by type"), nodesTable(a.nodes),
        el("div", { class: "cols" },
          el("div", null, el("h3", null, "MARS replicas"), replicasTable(a, self)),
          el("div", null, el("h3", null, "Peers: RTT and retransmissions"), peerMatrix(a))),
        el("div", { class: "cols" },
          el("div", null, el("h3", null, "Offline in the last minutes"), offlineTable(a)),
          el("div", null, el("h3", null, "Shared data"), sharedTable(sharedBy[a.app]))),
        el("div", { class: "cols" },
          el("div", { class: "kv" }, el("h3", null, "Key-value store"), kvTable(kvBy[a.app])),
          el("div", { class: "leases" }, el("h3", null, "Leases"), leaseTable(leasesBy[a.app]))),
        el("div", { class: "topics" }, el("h3", null, "Pub-sub topics"), topicsTable(a))));
    }
    apps.replaceChildren(frag);
  }

  async function get(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }
  let updates = 0;
  async function tick() {
    const conn = document.getElementById("conn");
    try {
      const [status, nodes, shared, kv, leases] = await Promise.all([get("/v1/status"), get("/v1/nodes"), get("/v1/shared"),
        get("/v1/kv?limit=50"), get("/v1/leases")]);
      render(status, nodes, shared, kv, leases);
      updates++;
      document.body.dataset.updates = String(updates);
      conn.textContent = "live · updated " + new Date().toLocaleTimeString();
      conn.className = "conn ok";
    } catch (e) {
      conn.textContent = "MARS unreachable: " + e.message;
      conn.className = "conn bad";
    }
    setTimeout(tick, EVERY_MS);
  }
  tick();
})();
