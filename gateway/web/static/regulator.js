// Regulator figures: response times with charts and every compliance list, from /api/reports
// (one request, one period), each with a CSV download of the same period.
"use strict";

const LIMIT_MIN = 30;
const form = document.getElementById("period");
const params = new URLSearchParams(location.search);
for (const name of ["since", "until", "group_by"]) {
  if (params.get(name)) form.elements[name].value = params.get(name);
}
const query = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));

for (const link of document.querySelectorAll("a.csv")) {
  link.href = `/api/reports/${link.dataset.section}.csv?${query}`;
  link.setAttribute("download", `${link.dataset.section}.csv`);
}

const minutes = (s) => (s === null || s === undefined ? null : s / 60);
const pct = (v) => (v === null || v === undefined ? "—" : `${Math.round(v * 10) / 10}%`);
const mins = (s) => (s === null || s === undefined ? "—" : duration(s));

// Horizontal bar chart: rows of {label, values: [{value, cls, title}]}; `max` scales the
// bars, `mark` draws a reference line (e.g. the 30-minute limit).
function barChart(rows, { max, mark, unit = "" }) {
  const rowH = 34, labelW = 220, width = 900, barW = width - labelW - 90;
  const perRow = Math.max(1, ...rows.map((r) => r.values.length));
  const height = rows.length * rowH * perRow + 30;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", width: "100%",
  });
  const x = (v) => labelW + (barW * Math.min(v, max)) / max;
  rows.forEach((row, i) => {
    const top = i * rowH * perRow + 10;
    chart.append(svg("text", { x: labelW - 10, y: top + rowH * 0.7, class: "axis-label",
      "text-anchor": "end" }, row.label));
    row.values.forEach((v, j) => {
      const y = top + j * rowH;
      if (v.value === null || v.value === undefined) {
        chart.append(svg("text", { x: labelW + 6, y: y + rowH * 0.65, class: "bar-text" }, "—"));
        return;
      }
      const bar = svg("rect", { x: labelW, y: y + 4, width: Math.max(2, x(v.value) - labelW),
        height: rowH - 10, class: `bar ${v.cls || ""}` });
      bar.append(svg("title", {}, `${v.title || ""} ${v.value}${unit}`));
      chart.append(bar);
      chart.append(svg("text", { x: x(v.value) + 8, y: y + rowH * 0.65, class: "bar-text" },
        `${Math.round(v.value * 10) / 10}${unit}`));
    });
  });
  if (mark !== undefined) {
    chart.append(svg("line", { x1: x(mark), x2: x(mark), y1: 0, y2: height, class: "mark" }));
  }
  return chart;
}

function figures(rows) {
  document.querySelector("#figures tbody").replaceChildren(...rows.map((r) => el("tr", {},
    el("td", {}, show(r.group)),
    ...[r.incidents, r.arrived, pct(r.within_limit_pct), mins(r.arrival_median_s),
      mins(r.arrival_p90_s), mins(r.arrival_max_s), r.breaches,
      pct(r.acknowledged_within_limit_pct), mins(r.release_median_s)]
      .map((v) => el("td", { class: "num" }, String(v))),
  )));
  const label = (r) => show(r.group);
  document.getElementById("chart-within").replaceChildren(barChart(rows.map((r) => ({
    label: label(r),
    values: [{ value: r.within_limit_pct, cls: r.breaches ? "bad" : "good" }],
  })), { max: 100, unit: "%" }));
  document.getElementById("chart-arrival").replaceChildren(barChart(rows.map((r) => ({
    label: label(r),
    values: [
      { value: minutes(r.arrival_median_s), cls: "good", title: t("arrival_median") },
      { value: minutes(r.arrival_p90_s), cls: "warn", title: t("arrival_p90") },
    ],
  })), { max: LIMIT_MIN * 1.5, mark: LIMIT_MIN, unit: " min" }));
}

// A cell by its field's name: seconds as durations, percentages, times in local time.
function cell(column, value) {
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) return value.join(" ");
  if (column.endsWith("_s") && typeof value === "number") return duration(value);
  if (column.endsWith("_pct")) return pct(value);
  if (typeof value === "number" && !Number.isInteger(value)) return String(Math.round(value * 100) / 100);
  if (/^\d{4}-\d\d-\d\dT/.test(value)) return dateTime(value);
  return String(value);
}

// A report section as a table; columns are the rows' own fields.
function table(rows) {
  if (!rows.length) return el("p", { class: "empty" }, t("none"));
  const columns = Object.keys(rows[0]);
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, t(c, c.replaceAll("_", " ")))))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...columns.map((c) => el("td", {}, cell(c, r[c]))))))));
}

function histogram(bins) {
  const label = (b) => t(b.to_s === null ? "histogram_last" : "histogram_bin")
    .replace("{from}", b.from_s / 60).replace("{to}", b.to_s / 60);
  const most = Math.max(1, ...bins.map((b) => b.arrivals));
  return barChart(bins.map((b) => ({ label: label(b), values: [{ value: b.arrivals,
    cls: b.to_s !== null && b.to_s <= LIMIT_MIN * 60 ? "good" : "bad" }] })), { max: most });
}

async function load() {
  const report = await api("GET", "/api/reports?" + query);
  figures(report["response-times"]);
  for (const section of document.querySelectorAll("section[data-section]")) {
    const rows = report[section.dataset.section] || [];
    section.querySelector(".rows").replaceChildren(
      section.dataset.section === "arrival-histogram" ? histogram(rows) : table(rows));
  }
  document.body.dataset.loaded = "true";
}

load().catch((error) => toast(`${t("load_failed")}: ${error.message}`));
