// One elevator: its registry record, its live state (refreshed), and the black box of its
// latest incident drawn as a timeline: floor on top, then door, occupancy and more as lanes.
"use strict";

const ELEVATOR = document.getElementById("elevator-id").dataset.id;
const LIVE_MS = 2000;
const DOOR_CLASS = { open: "good", opening: "warn", closing: "warn", closed: "idle", fault: "bad" };

// A device value (door "closed", mode "inspection", ...) in the page's language.
function val(value) {
  return value === null || value === undefined || value === "" ? "—" : t("val_" + value, String(value));
}

function fillRecord(list, values) {
  for (const dd of list.querySelectorAll("dd[data-key]")) {
    dd.textContent = values[dd.dataset.key];
  }
}

async function loadLive() {
  const e = await api("GET", "/api/elevators/" + encodeURIComponent(ELEVATOR));
  const body = (e.last_frame && e.last_frame.body) || {};
  fillRecord(document.getElementById("registry"), Object.fromEntries(
    ["address", "site", "district", "maintenance_company", "maintenance_phone", "use_unit",
      "inspection_due", "last_maintenance"].map((k) => [k, show(e[k])])));
  fillRecord(document.getElementById("live"), {
    online: yesNo(e.online), floor: show(body.floor), door: val(body.door), mode: val(body.mode),
    occupied: yesNo(body.occupied), moving: yesNo(body.moving), power: val(body.power),
    last_frame: e.last_frame ? dateTime(e.last_frame.received_at) : "—",
    alarm_test: (e.last_alarm_test_at ? dateTime(e.last_alarm_test_at) : t("never")) +
      (e.alarm_test_overdue ? ` · ${t("alarm_test_overdue")}` : ""),
  });
  document.querySelector('#live dd[data-key="alarm_test"]').classList.toggle("bad", e.alarm_test_overdue);
  return e;
}

// The open incident the gateway leads with (the entrapment, not its companions), else the
// latest main incident.
async function latestIncident(e) {
  if (e.open_incident) return e.open_incident;
  const query = new URLSearchParams({ state: "all", elevator_id: ELEVATOR, limit: "1" });
  return (await api("GET", "/api/incidents?" + query))[0] || null;
}

// Lanes under the floor plot: [label, value of a status body, css class of a value]
const LANES = [
  [t("door"), (b) => b.door, (v) => DOOR_CLASS[v]],
  [t("occupied"), (b) => (b.occupied ? "yes" : ""), () => "bad"],
  [t("moving"), (b) => (b.moving ? "yes" : ""), () => ""],
  [t("alarm"), (b) => (b.alarm_button ? "yes" : ""), () => "bad"],
  [t("power"), (b) => (b.power === "mains" ? "" : b.power), () => "warn"],
  [t("mode"), (b) => (b.mode === "normal" ? "" : b.mode), () => "warn"],
];
const FONT_PX = 15;

// Roughly how wide a label is drawn: CJK characters are square, others about half as wide.
function textWidth(text) {
  return [...text].reduce((w, ch) => w + (ch.charCodeAt(0) > 0x2e80 ? FONT_PX : FONT_PX * 0.6), 0);
}

// Labels of the vertical marks, each put on the first row where it overlaps nothing.
function markRows(marks, x, width) {
  const ends = [];
  return marks.map(([at, , label]) => {
    const w = textWidth(label) + 8;
    const anchorEnd = x(at) + 4 + w > width;
    const from = anchorEnd ? x(at) - 4 - w : x(at) + 4;
    let row = ends.findIndex((end) => end < from);
    if (row < 0) row = ends.push(0) - 1;
    ends[row] = from + w;
    return { row, anchorEnd };
  });
}

function timeline(incident, frames) {
  const width = 1100, left = 130, right = 20, floorH = 170, laneH = 30;
  const statuses = frames.filter((f) => f.kind === "status");
  const times = frames.map((f) => new Date(f.received_at).getTime());
  const start = Math.min(...times, new Date(incident.opened_at).getTime());
  const end = Math.max(...times, new Date(incident.opened_at).getTime()) + 1000;
  const x = (ms) => left + ((width - left - right) * (ms - start)) / (end - start);
  // the moment the incident opened, and event frames, as vertical marks with labels above
  const marks = [[new Date(incident.opened_at).getTime(), "opened", t("opened")],
    ...frames.filter((f) => f.kind === "event").map((f) => [new Date(f.received_at).getTime(),
      "event", `${t("kind_" + f.body.code, f.body.code)} ${val(f.body.state)}`])]
    .sort((a, b) => a[0] - b[0]);
  const rows = markRows(marks, x, width);
  const top = 12 + 18 * Math.max(1, ...rows.map((r) => r.row + 1));
  const height = top + floorH + LANES.length * laneH + 40;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    width: "100%", "aria-label": t("black_box") });

  // floor: a step line
  const floors = statuses.map((f) => f.body.floor);
  const [lo, hi] = [Math.min(...floors), Math.max(...floors)];
  const y = (floor) => top + floorH - 15 - ((floorH - 30) * (floor - lo)) / Math.max(1, hi - lo);
  for (const floor of new Set([lo, hi])) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(floor), y2: y(floor), class: "grid" }));
    chart.append(svg("text", { x: left - 10, y: y(floor) + 5, "text-anchor": "end",
      class: "axis-label" }, `${t("floor")} ${floor}`));
  }
  const points = statuses.flatMap((f, i) => {
    const at = x(new Date(f.received_at).getTime());
    const next = statuses[i + 1] ? x(new Date(statuses[i + 1].received_at).getTime()) : x(end);
    return [`${at},${y(f.body.floor)}`, `${next},${y(f.body.floor)}`];
  });
  chart.append(svg("polyline", { points: points.join(" "), class: "floor-line" }));

  // lanes: one band per stretch of a value (frames in a row with the same value merged)
  LANES.forEach(([label, valueOf, classOf], lane) => {
    const ly = top + floorH + lane * laneH;
    chart.append(svg("text", { x: left - 10, y: ly + laneH * 0.65, "text-anchor": "end",
      class: "axis-label" }, label));
    const runs = [];
    statuses.forEach((f, i) => {
      const value = valueOf(f.body);
      const until = statuses[i + 1] ? new Date(statuses[i + 1].received_at).getTime() : end;
      const last = runs[runs.length - 1];
      if (last && last.value === value) last.until = until;
      else runs.push({ value, from: new Date(f.received_at).getTime(), until });
    });
    for (const { value, from, until } of runs.filter((r) => r.value)) {
      const [x0, x1] = [x(from), x(until)];
      const band = svg("rect", { x: x0, y: ly + 3, width: Math.max(2, x1 - x0), height: laneH - 6,
        class: `bar ${classOf(value)}` });
      const shown = value === "yes" ? t("yes") : val(value);
      band.append(svg("title", {}, `${label}: ${shown} @ ${clockTime(new Date(from).toISOString())}`));
      chart.append(band);
      if (value !== "yes" && x1 - x0 > textWidth(shown) + 12) {
        chart.append(svg("text", { x: x0 + 6, y: ly + laneH * 0.68, class: "bar-label" }, shown));
      }
    }
  });

  marks.forEach(([at, cls, label], n) => {
    const { row, anchorEnd } = rows[n];
    chart.append(svg("line", { x1: x(at), x2: x(at), y1: 14 + 18 * row, y2: height - 30, class: cls }));
    chart.append(svg("text", { x: x(at) + (anchorEnd ? -4 : 4), y: 12 + 18 * row,
      "text-anchor": anchorEnd ? "end" : "start", class: "axis-label mark-label" }, label));
  });

  // time axis
  for (let i = 0; i <= 4; i++) {
    const at = start + ((end - start) * i) / 4;
    chart.append(svg("text", { x: x(at), y: height - 10, "text-anchor": i ? (i === 4 ? "end" : "middle") : "start",
      class: "axis-label" }, clockTime(new Date(at).toISOString())));
  }
  return chart;
}

async function loadBlackBox(e) {
  const summary = document.getElementById("incident-summary");
  const box = document.getElementById("blackbox");
  const incident = await latestIncident(e);
  if (!incident) {
    summary.textContent = t("no_incident");
    return;
  }
  summary.replaceChildren(
    el("strong", {}, `${t("kind_" + incident.kind, incident.kind)} · ${t("state_" + incident.state, incident.state)}`),
    e.maintenance_phone ? ` · ${t("maintenance_phone")} ` : "",
    e.maintenance_phone ? el("a", { href: "tel:" + e.maintenance_phone.replace(/\s/g, ""), class: "phone" }, e.maintenance_phone) : "",
    ` — ${t("opened")} ${dateTime(incident.opened_at)} · ${incident.id}`,
  );
  const frames = await api("GET", `/api/incidents/${encodeURIComponent(incident.id)}/frames`);
  box.replaceChildren(frames.some((f) => f.kind === "status")
    ? timeline(incident, frames) : el("p", {}, t("no_frames")));
  document.body.dataset.loaded = "true";
}

// The file: every record of the elevator, one timeline, newest first on the page.
async function loadFile() {
  const file = await api("GET", `/api/elevators/${encodeURIComponent(ELEVATOR)}/file`);
  const rows = file.entries.slice().reverse().map((e) => el("tr", { class: e.flag ? "flagged" : "" },
    el("td", {}, dateTime(e.at)), el("td", {}, e.until ? dateTime(e.until) : "—"),
    el("td", {}, t("file_" + e.type, e.type)), el("td", {}, e.summary), el("td", {}, show(e.flag))));
  document.querySelector("#file tbody").replaceChildren(...rows);
}

function failed(error) {
  toast(`${t("load_failed")}: ${error.message}`);
}

loadLive().then(loadBlackBox).catch(failed);
loadFile().catch(failed);
setInterval(() => loadLive().catch(failed), LIVE_MS);
