// Fleet overview: counts and elevators from /api/fleet, filtered by district and company.
"use strict";

const REFRESH_MS = 5000;
const filters = document.getElementById("filters");

function fillChoices(select, values) {
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, t("all")),
    ...values.map((v) => el("option", { value: v }, v)));
  select.value = values.includes(chosen) ? chosen : "";
}

async function load() {
  const query = new URLSearchParams([...new FormData(filters)].filter(([, v]) => v));
  const fleet = await api("GET", "/api/fleet?" + query);
  fillChoices(document.getElementById("district"), fleet.districts);
  fillChoices(document.getElementById("company"), fleet.maintenance_companies);
  for (const tile of document.querySelectorAll("[data-count]")) {
    tile.querySelector(".n").textContent = fleet.counts[tile.dataset.count];
  }
  document.querySelector("#fleet tbody").replaceChildren(...fleet.elevators.map((e) => el("tr",
    { "data-elevator": e.elevator_id },
    el("td", {}, el("a", { href: "/elevators/" + encodeURIComponent(e.elevator_id) }, e.elevator_id)),
    el("td", {}, show(e.district)),
    el("td", {}, show(e.maintenance_company)),
    el("td", {}, show(e.address)),
    el("td", {}, el("span", { class: e.online ? "badge good" : e.online === false ? "badge bad" : "" },
      yesNo(e.online))),
    el("td", {}, show(e.mode)),
    el("td", { class: "num" }, show(e.floor)),
    el("td", {}, e.open_incidents.length ? el("span", { class: "badge bad" },
      String(e.open_incidents.length)) : "0"),
  )));
  document.body.dataset.loaded = query.toString() || "all";
}

function refresh() {
  load().catch((error) => toast(`${t("load_failed")}: ${error.message}`));
}

filters.addEventListener("change", refresh);
filters.addEventListener("submit", (event) => event.preventDefault());
refresh();
setInterval(refresh, REFRESH_MS);
