// Dispatch-centre dashboard: one page, no build step. State comes from /api/v1/live
// (a snapshot, then updates); actions go to /api/v1/ with the session's CSRF token.
"use strict";

const config = JSON.parse(document.querySelector('meta[name="tm-config"]').content);
const RANK = { general: 1, moderate: 2, severe: 3 };
const state = { vehicles: new Map(), alarms: new Map(), sort: { key: "plate", dir: 1 }, live: null };
const $ = (sel) => document.querySelector(sel);

// A string replace, not a DOM round trip: the queue and the list escape thousands of
// values a second with a large fleet.
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function esc(text) {
  return text == null ? "" : String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const shown = (tab) => $(`#tab-${tab}`).classList.contains("active");

function sev(severity) {
  return `<span class="sev ${severity || "none"}">${severity || "—"}</span>`;
}

function ago(iso) {
  if (!iso) return "—";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

async function api(method, path, body) {
  const init = { method, headers: { "X-CSRF-Token": config.csrf }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) location.href = "/login";
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.error ? data.error.message : resp.statusText);
  return data;
}

// -- tabs -------------------------------------------------------------------------------

function route() {
  const hash = location.hash.slice(1) || "fleet";
  const [tab, arg] = hash.split("/");
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === `tab-${tab}`));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
  if (tab === "fleet") { fleetMap.invalidateSize(); drawMarkersBehind(); }
  if (tab === "fleet" || tab === "alarms") scheduleRender();  // what waited while hidden
  if (tab === "vehicle" && arg) showVehicle(decodeURIComponent(arg));
  if (tab === "kpis") showKpis();
}

// -- live fleet -------------------------------------------------------------------------

function makeMap(el) {
  // Canvas, not one DOM element per vehicle: 2,000 markers moving every second stay cheap.
  const map = L.map(el, { zoomControl: true, attributionControl: !!config.attribution, preferCanvas: true })
    .setView([31.3, 120.6], 10);
  if (config.tiles) L.tileLayer(config.tiles, { attribution: config.attribution, maxZoom: 18 }).addTo(map);
  return map;
}

const fleetMap = makeMap("fleet-map");
const markers = new Map();
let fitted = false;

const SEVERITY_COLOURS = { general: "#2f80ed", moderate: "#e67e22", severe: "#c0392b" };

// A triangle pointing along the vehicle's heading, drawn by Leaflet's canvas renderer.
const Arrow = L.CircleMarker.extend({
  _updatePath() {
    const r = this._renderer;
    if (!r._drawing || this._empty()) return;
    const p = this._point, ctx = r._ctx, a = ((this.options.heading || 0) * Math.PI) / 180;
    const s = this._radius;
    ctx.beginPath();
    ctx.moveTo(p.x + Math.sin(a) * s * 1.6, p.y - Math.cos(a) * s * 1.6);
    ctx.lineTo(p.x + Math.sin(a + 2.5) * s, p.y - Math.cos(a + 2.5) * s);
    ctx.lineTo(p.x + Math.sin(a - 2.5) * s, p.y - Math.cos(a - 2.5) * s);
    ctx.closePath();
    r._fillStroke(ctx, this);
  },
});

function arrowStyle(v) {
  const colour = SEVERITY_COLOURS[v.worst_severity] || "#7a8797";
  return { color: "#1d2733", weight: 1, fillColor: colour, fillOpacity: v.online ? 0.95 : 0.35,
    opacity: v.online ? 1 : 0.4, radius: 6 };
}

function drawVehicle(v) {
  if (v.lat == null) return;
  let m = markers.get(v.id);
  const style = arrowStyle(v);
  if (!m) {
    m = new Arrow([v.lat, v.lon], { ...style, heading: v.heading_deg || 0 });
    m.on("click", () => { location.hash = `vehicle/${encodeURIComponent(v.id)}`; });
    m.bindTooltip("");
    m.addTo(fleetMap);
    markers.set(v.id, m);
  } else {
    m.options.heading = v.heading_deg || 0;
    if (m.options.fillColor !== style.fillColor || m.options.fillOpacity !== style.fillOpacity) m.setStyle(style);
    m.setLatLng([v.lat, v.lon]);
  }
  m.setTooltipContent(`${esc(v.plate || v.id)} · ${v.speed_kmh ?? "—"} km/h`);
}

async function drawZones() {
  const colours = { school: "#e67e22", hazmat_restricted: "#c0392b", tunnel: "#7f8c8d",
    depot: "#2e8b57", speed_limit: "#2f80ed", flood_prone: "#16a085" };
  const zones = await api("GET", "/api/v1/zones");
  L.geoJSON(zones, {
    style: (f) => ({ color: colours[f.properties.kind] || "#555", weight: 1, fillOpacity: 0.08 }),
    onEachFeature: (f, layer) => layer.bindTooltip(`${f.properties.name} (${f.properties.kind})`),
  }).addTo(fleetMap);
}

const LIST_ROWS = 300;  // the list shows the first rows in sort order; the filter finds any

function renderVehicles() {
  const { key, dir } = state.sort;
  const needle = $("#vehicle-filter").value.trim().toLowerCase();
  const all = [...state.vehicles.values()];
  const rows = all
    .filter((v) => !needle || [v.id, v.plate, v.driver].some((x) => (x || "").toLowerCase().includes(needle)))
    .map((v) => ({ ...v, worst_rank: RANK[v.worst_severity] || 0 }));
  rows.sort((a, b) => {
    const x = a[key] ?? "", y = b[key] ?? "";
    return (x < y ? -1 : x > y ? 1 : 0) * dir || (a.id < b.id ? -1 : 1);
  });
  $("#vehicle-count").textContent = `${Math.min(rows.length, LIST_ROWS)} of ${all.length} vehicles` +
    `, ${all.filter((v) => v.online).length} online`;
  $("#vehicle-table tbody").innerHTML = rows.slice(0, LIST_ROWS).map((v) => `
    <tr class="clickable" data-vehicle="${esc(v.id)}">
      <td>${esc(v.plate || v.id)}</td><td>${esc(v.class)}</td><td>${esc(v.driver || "—")}</td>
      <td data-testid="speed">${v.speed_kmh ?? "—"}</td><td>${ago(v.last_seen)}</td>
      <td>${v.online ? "online" : "offline"}</td><td>${sev(v.worst_severity)}</td>
    </tr>`).join("");
  if (!fitted) {
    const pts = rows.filter((v) => v.lat != null).map((v) => [v.lat, v.lon]);
    if (pts.length) { fleetMap.fitBounds(pts, { maxZoom: 13, padding: [20, 20] }); fitted = true; }
  }
}

$("#vehicle-filter").addEventListener("input", renderVehicles);
$("#vehicle-table thead").addEventListener("click", (e) => {
  const key = e.target.dataset.sort;
  if (!key) return;
  state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
  renderVehicles();
});
$("#vehicle-table tbody").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-vehicle]");
  if (tr) location.hash = `vehicle/${encodeURIComponent(tr.dataset.vehicle)}`;
});

// Markers of a hidden map are moved when it is shown again (route()).
const markersBehind = new Set();
function drawMarkersBehind() {
  for (const id of markersBehind) {
    const v = state.vehicles.get(id);
    if (v) drawVehicle(v);
  }
  markersBehind.clear();
}

function updateVehicles(list) {
  const mapShown = shown("fleet");
  for (const v of list) {
    const before = state.vehicles.get(v.id);
    state.vehicles.set(v.id, v);
    if (mapShown) drawVehicle(v); else markersBehind.add(v.id);
    if (!before || before.plate !== v.plate || before.fleet !== v.fleet) alarmsDirty = true;
  }
  vehiclesDirty = true;
  scheduleRender();
}

// Re-render only what changed, and the vehicle list at most once a second: rebuilding
// rows under a dispatcher's pointer would swallow the click.
let alarmsDirty = true, vehiclesDirty = true, renderQueued = false, lastVehicleRender = 0;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    // A hidden view keeps its dirty flag and is drawn when shown (route()).
    if (alarmsDirty) {
      if (shown("alarms")) { alarmsDirty = false; renderAlarms(); } else renderQueueCount();
    }
    if (vehiclesDirty && shown("fleet")) {
      const wait = 1000 - (performance.now() - lastVehicleRender);
      if (wait > 0) { setTimeout(scheduleRender, wait); return; }
      vehiclesDirty = false;
      lastVehicleRender = performance.now();
      renderVehicles();
    }
  });
}

// -- alarm queue ------------------------------------------------------------------------

let audio = null;
function alertSound() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.2;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.4);
  } catch (err) { /* no audio device: the row still flashes */ }
}

function inQueue(a) { return a.active || !a.acknowledged; }

function updateAlarms(list, fromSnapshot) {
  for (const a of list) {
    const before = state.alarms.get(a.id);
    if (!fromSnapshot && a.severity === "severe" && a.active && !a.acknowledged &&
        (!before || before.severity !== "severe")) {
      alertSound();
    }
    a.openedMs = Date.parse(a.opened_at);  // the queue's sort key, parsed once
    if (inQueue(a)) state.alarms.set(a.id, a); else state.alarms.delete(a.id);
  }
  refreshFilters();
  alarmsDirty = true;
  scheduleRender();
}

// Kinds as a dispatcher reads them; the API keeps the codes (filters, scripts).
const KIND_LABELS = { unit_silent: "unit silent (no data)" };
function kindLabel(kind) { return KIND_LABELS[kind] || kind.replace(/_/g, " "); }

function refreshFilters() {
  const fleets = new Set(), kinds = new Set();
  for (const a of state.alarms.values()) {
    kinds.add(a.kind);
    const v = state.vehicles.get(a.vehicle_id);
    if (v) fleets.add(v.fleet);
  }
  for (const [sel, values] of [["#f-fleet", fleets], ["#f-kind", kinds]]) {
    const el = $(sel), current = el.value;
    const label = sel === "#f-kind" ? kindLabel : (x) => x;
    const html = `<option value="">all</option>` + [...values].sort().map((x) => `<option value="${esc(x)}">${esc(label(x))}</option>`).join("");
    if (el.dataset.html === html) continue;  // rebuilding a select resets its state
    el.innerHTML = html;
    el.dataset.html = html;
    el.value = current;
  }
}

function escalationCell(task) {
  if (!task) return "—";
  if (task.status !== "open") return esc(task.status);
  const next = task.next_escalation_at || task.due_at;
  const left = (Date.parse(next) - Date.now()) / 1000;
  const label = task.next_escalation_at ? `level ${task.escalation_level + 1}` : "ack due";
  if (left <= 0) return `<span class="overdue">${label} overdue ${ago(next)}</span>`;
  return `${label} in ${left < 60 ? Math.round(left) + " s" : Math.floor(left / 60) + " min " + Math.round(left % 60) + " s"}`;
}

function renderQueueCount() {
  let unacked = 0;
  for (const a of state.alarms.values()) if (!a.acknowledged) unacked++;
  setText($("#queue-count"), unacked || "");
}

// Write only what changed: every write to the DOM costs a style and layout pass.
function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

function renderAlarms() {
  const fs = $("#f-severity").value, fst = $("#f-state").value, ff = $("#f-fleet").value, fk = $("#f-kind").value;
  const rows = [...state.alarms.values()].filter((a) => {
    const v = state.vehicles.get(a.vehicle_id);
    if (fs && a.severity !== fs) return false;
    if (fst === "unack" && (a.acknowledged || !a.active)) return false;
    if (fst === "ack" && !a.acknowledged) return false;
    if (fst === "cleared" && a.active) return false;
    if (ff && (!v || v.fleet !== ff)) return false;
    if (fk && a.kind !== fk) return false;
    return true;
  });
  rows.sort((a, b) => (RANK[b.severity] - RANK[a.severity]) || (a.openedMs - b.openedMs));
  renderQueueCount();
  const body = $("#alarm-table tbody");
  const wanted = new Set(rows.map((a) => a.id));
  for (const [id, cached] of rowCache) {
    if (!wanted.has(id)) { cached.tr.remove(); rowCache.delete(id); }
  }
  rows.forEach((a, i) => {
    // Keyed rows: a row is rebuilt only when what it shows changed, and kept (with its
    // buttons) otherwise, so a click never lands on a row that is being replaced.
    const html = alarmCells(a);
    let cached = rowCache.get(a.id);
    if (!cached) {
      const tr = document.createElement("tr");
      tr.dataset.alarm = a.id;
      tr.dataset.testid = "alarm-row";
      cached = { tr, html: "" };
      rowCache.set(a.id, cached);
    }
    cached.tr.className = `${a.severity} ${a.acknowledged ? "ack" : "unack"}`;
    if (cached.html !== html) { cached.tr.innerHTML = html; cached.html = html; }
    if (body.children[i] !== cached.tr) body.insertBefore(cached.tr, body.children[i] || null);
  });
  tickAlarms();
}

const rowCache = new Map();

// How a trained model graded the alarm (nothing for one the rules graded).
function modelGrade(a) {
  if (!a.model_version) return "";
  const pct = (100 * a.probability).toFixed(a.probability < 0.01 ? 2 : 1);
  const why = (a.factors || []).map(esc).join("; ");
  return `<div class="grade" data-testid="model-grade" title="severity model ${esc(a.model_version)}">P(collision, 30 min) ${pct} %${why ? " · " + why : ""}</div>`;
}

function alarmCells(a) {
  const v = state.vehicles.get(a.vehicle_id);
  const cab = (a.interventions || []).map((i) => `<span class="badge ${i.status}" title="${esc(i.action)}">${esc(i.status)}</span>`).join("");
  return `<td>${sev(a.severity)}</td><td><a href="#vehicle/${encodeURIComponent(a.vehicle_id)}">${esc(v ? v.plate || v.id : a.vehicle_id)}</a></td>
      <td>${esc(kindLabel(a.kind))}</td><td>${esc(a.reason)}${modelGrade(a)}</td><td data-age></td><td>${a.occurrences}</td>
      <td>${esc(a.status)}${a.assignee ? " · " + esc(a.assignee) : ""}</td><td data-esc></td><td>${cab || "—"}</td>
      <td>
        ${a.acknowledged ? "" : `<button data-act="acknowledge">Ack</button>`}
        <button data-act="assign">Take</button>
        <button data-act="comment">Comment</button>
        ${a.active ? `<button data-act="clear">Clear</button>` : ""}
        <button data-act="detail">Audit</button>
      </td>`;
}

for (const id of ["#f-severity", "#f-state", "#f-fleet", "#f-kind"]) $(id).addEventListener("change", renderAlarms);

function tickAlarms() {  // ages and escalation timers, without rebuilding the rows
  for (const tr of document.querySelectorAll("#alarm-table tbody tr[data-alarm]")) {
    const a = state.alarms.get(tr.dataset.alarm);
    if (!a) continue;
    setText(tr.querySelector("[data-age]"), ago(a.opened_at));
    const cell = tr.querySelector("[data-esc]"), html = escalationCell(a.task);
    if (cell.dataset.html !== html) { cell.innerHTML = html; cell.dataset.html = html; }
  }
}

$("#alarm-table tbody").addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-act]");
  if (!button) return;
  const id = button.closest("tr").dataset.alarm, act = button.dataset.act;
  try {
    let detail;
    if (act === "detail") detail = await api("GET", `/api/v1/alarms/${encodeURIComponent(id)}`);
    else if (act === "assign") detail = await api("POST", `/api/v1/alarms/${encodeURIComponent(id)}/assign`, { assignee: config.user });
    else if (act === "comment") {
      const text = prompt("Comment");
      if (!text) return;
      detail = await api("POST", `/api/v1/alarms/${encodeURIComponent(id)}/comment`, { text });
    } else detail = await api("POST", `/api/v1/alarms/${encodeURIComponent(id)}/${act}`, {});
    if (act !== "detail") {
      const a = { ...detail.alarm, task: detail.task, interventions: detail.interventions };
      updateAlarms([a], true);
    }
    showAudit(detail);
  } catch (err) { alert(err.message); }
});

function showAudit(detail) {
  const box = $("#alarm-detail");
  box.hidden = false;
  box.innerHTML = `<h3>${sev(detail.alarm.severity)} ${esc(kindLabel(detail.alarm.kind))} · ${esc(detail.alarm.vehicle_id)}</h3>
    <p>${esc(detail.alarm.reason)}</p>${modelGrade(detail.alarm)}${detail.alarm.model_version ? `<p class="grade">graded by model ${esc(detail.alarm.model_version)}</p>` : ""}
    <table data-testid="audit"><thead><tr><th>When</th><th>Who</th><th>What</th><th>Detail</th></tr></thead><tbody>
    ${detail.audit.map((e) => `<tr><td>${new Date(e.at).toLocaleString()}</td><td>${esc(e.actor)}</td>
      <td data-testid="audit-action">${esc(e.action)}</td><td>${esc(JSON.stringify(e.detail))}</td></tr>`).join("")}
    </tbody></table>
    <h4>Escalation</h4><p>${detail.escalations.map((s) => `level ${s.level} → ${esc(s.target)} at ${new Date(s.fired_at).toLocaleTimeString()}${s.late ? " (late)" : ""}`).join("<br>") || "none"}</p>`;
}

setInterval(() => { if ($("#tab-alarms").classList.contains("active")) tickAlarms(); }, 1000);

// The vehicle page follows its vehicle: tires and track refresh while it is open.
let shownVehicle = null;
setInterval(() => {
  if (shownVehicle && $("#tab-vehicle").classList.contains("active")) showVehicle(shownVehicle, false).catch(() => {});
}, 5000);

// -- vehicle page -----------------------------------------------------------------------

const vehicleMap = makeMap("vehicle-map");
let trackLayer = null;

function axleOf(pos) { return pos.match(/^\d+/)[0]; }

async function showVehicle(id, refit = true) {
  shownVehicle = id;
  const d = await api("GET", `/api/v1/vehicles/${encodeURIComponent(id)}`);
  const v = d.vehicle;
  $("#vehicle-title").innerHTML = `${esc(v.plate || v.id)} · ${esc(v.class)} · driver ${esc(v.driver || "—")} · ${v.speed_kmh ?? "—"} km/h · ${v.online ? "online" : "offline"}`;
  const axles = new Map();
  for (const t of d.tires) {
    const k = axleOf(t.pos);
    if (!axles.has(k)) axles.set(k, []);
    axles.get(k).push(t);
  }
  const tire = (t) => `<div class="tire ${t.severity || ""}" data-testid="tire" data-pos="${esc(t.pos)}" title="${esc(t.reason || "")}">
      <div class="pos">${esc(t.pos)}</div><div>${t.kpa ?? "—"} kPa</div><div>${t.temp_c ?? "—"} °C</div><div>${esc(t.state)}</div></div>`;
  $("#tires").innerHTML = [...axles.entries()].map(([axle, tires]) => {
    const left = tires.filter((t) => t.pos.includes("L")).sort((a, b) => (a.pos.endsWith("O") ? -1 : 1));
    const right = tires.filter((t) => t.pos.includes("R")).sort((a, b) => (a.pos.endsWith("I") ? -1 : 1));
    return `<div class="axle"><span class="label">axle ${axle}</span>${left.map(tire).join("")}<span class="shaft"></span>${right.map(tire).join("")}</div>`;
  }).join("");
  if (trackLayer) trackLayer.remove();
  const pts = d.track.map((p) => [p[1], p[0]]);
  trackLayer = L.polyline(pts, { color: "#2f80ed", weight: 3 }).addTo(vehicleMap);
  vehicleMap.invalidateSize();
  if (pts.length && refit) vehicleMap.fitBounds(trackLayer.getBounds(), { maxZoom: 15, padding: [10, 10] });
  $("#vehicle-alarms tbody").innerHTML = d.alarms.map((a) => `<tr><td>${sev(a.severity)}</td><td>${esc(kindLabel(a.kind))}</td>
    <td>${esc(a.reason)}${modelGrade(a)}</td><td>${ago(a.last_ts)} ago</td><td>${a.active ? "active" : "cleared"}${a.late ? " · late" : ""}</td></tr>`).join("") || "<tr><td>none</td></tr>";
  $("#vehicle-interventions tbody").innerHTML = d.interventions.map((i) => `<tr><td>${sev(i.severity)}</td><td>${esc(i.action)}</td>
    <td>${esc(i.message)}</td><td><span class="badge ${i.status}">${esc(i.status)}</span></td><td>${ago(i.issued_at)} ago</td></tr>`).join("") || "<tr><td>none</td></tr>";
  $("#vehicle-events tbody").innerHTML = d.events.map((e) => `<tr><td>${esc(e.kind)}</td><td>${e.level == null ? "" : "L" + e.level}</td>
    <td>${Math.round(e.speed_kmh)} km/h</td><td>${esc(e.driver_id || "")}</td><td>${ago(e.ts)} ago</td></tr>`).join("") || "<tr><td>none</td></tr>";
}

// -- KPIs -------------------------------------------------------------------------------

const charts = {};
const COLORS = { general: "#2f80ed", moderate: "#e67e22", severe: "#c0392b" };

function chart(id, cfg) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), cfg);
}

function stacked(rows, keyName) {
  const keys = [...new Set(rows.map((r) => r[keyName]))].sort();
  return {
    labels: keys,
    datasets: ["general", "moderate", "severe"].map((s) => ({
      label: s, backgroundColor: COLORS[s],
      data: keys.map((k) => rows.filter((r) => r[keyName] === k && r.severity === s).reduce((n, r) => n + r.count, 0)),
    })),
  };
}

async function showKpis() {
  const k = await api("GET", "/api/v1/kpis?days=30");
  const stackedOpts = { animation: false, scales: { x: { stacked: true }, y: { stacked: true } } };
  chart("chart-days", { type: "bar", data: stacked(k.alarms_per_day, "day"), options: stackedOpts });
  chart("chart-months", { type: "bar", data: stacked(k.alarms_per_month, "month"), options: stackedOpts });
  const sevs = ["general", "moderate", "severe"];
  chart("chart-split", {
    type: "bar",
    data: {
      labels: sevs,
      datasets: [
        { label: "this fleet, %", backgroundColor: "#1d2733", data: sevs.map((s) => k.severity_split[s].percent) },
        { label: "reference, %", backgroundColor: "#9aa6b2", data: sevs.map((s) => k.reference_split[s]) },
      ],
    },
    options: { animation: false, scales: { y: { type: "logarithmic" } } },
  });
  chart("chart-recurrence", {
    type: "bar",
    data: {
      labels: k.recurrence.map((r) => r.severity),
      datasets: [
        { label: "recurred within 10 min, %", backgroundColor: "#e67e22", data: k.recurrence.map((r) => r.recurred_10m_percent) },
        { label: "within 30 min, %", backgroundColor: "#c0392b", data: k.recurrence.map((r) => r.recurred_30m_percent) },
      ],
    },
    options: { animation: false },
  });
  const bars = (id, rows) => chart(id, {
    type: "bar",
    data: { labels: rows.map((r) => r.plate || r.id), datasets: [{ label: "risk points", backgroundColor: "#c0392b", data: rows.map((r) => r.points) }] },
    options: { animation: false, indexAxis: "y" },
  });
  bars("chart-vehicles", k.riskiest_vehicles);
  bars("chart-drivers", k.riskiest_drivers);
  const d = k.delivery;
  $("#delivery").textContent = `Interventions (30 days): ${d.issued} issued, ${d.delivered} delivered to the cab; ` +
    `delivery time p50 ${d.p50_s ?? "—"} s, p95 ${d.p95_s ?? "—"} s.`;
}

// -- the live socket --------------------------------------------------------------------

// A link can die without a close (a laptop that slept, a proxy or NAT that forgot it):
// the page would say "live" while nothing arrives. Ping it; if a ping goes unanswered
// for 1.5 intervals (nothing at all heard since it went), drop the link and open a new
// one. Measured from the ping, not the clock: a background tab's timers run late.
const LIVE_PING_MS = (config.live_ping_s || 10) * 1000;

function connect(delay) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/live`);
  const status = $("#live-status");
  let heard = performance.now(), pinged = 0, gone = false;
  const watchdog = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    if (pinged > heard && now - pinged > LIVE_PING_MS * 1.5) { lost(); return; }
    if (pinged <= heard && now - pinged >= LIVE_PING_MS) { pinged = now; ws.send("ping"); }
  }, LIVE_PING_MS / 2);
  function lost() {
    if (gone) return;
    gone = true;
    clearInterval(watchdog);
    ws.onclose = ws.onmessage = null;
    ws.close();
    status.textContent = "reconnecting…";
    status.className = "status down";
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  }
  ws.onopen = () => {
    heard = performance.now();
    status.textContent = "live"; status.className = "status live"; delay = 500;
  };
  ws.onmessage = (msg) => {
    heard = performance.now();
    const m = JSON.parse(msg.data);
    if (m.type === "snapshot") {  // a (re)connect: replace everything
      state.vehicles.clear();
      state.alarms.clear();
      updateVehicles(m.vehicles);
      updateAlarms(m.alarms, true);
    } else if (m.type === "vehicles") updateVehicles(m.vehicles);
    else if (m.type === "alarms") updateAlarms(m.alarms, false);
  };
  ws.onclose = lost;
  state.live = ws;
}

$("#who").textContent = `${config.user} (${config.role})`;
document.querySelector('#logout input[name="csrf"]').value = config.csrf;
window.addEventListener("hashchange", route);
route();
connect(500);
drawZones().catch(() => { /* the map works without zones */ });
