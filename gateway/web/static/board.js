// The dispatch board: open incidents from the server-sent event stream, one compact row per
// episode (its companions inside), countdown first, details on expand, and (for dispatchers)
// the next steps that move it along. Keyboard first; the tab title counts the unacknowledged.
"use strict";

const STATES = ["open", "acknowledged", "dispatched", "arrived", "released", "closed"];
const CLOCKED = new Set(["entrapment", "accident"]); // classes with a legal arrival limit
const REALERT_MS = 30000;

const board = document.getElementById("board");
const cardTemplate = document.getElementById("card");
const canAct = document.body.dataset.canAct === "true";
const items = new Map(); // incident id -> {incident, elevator}
const cards = new Map(); // incident id -> its <article> (incidents with no parent on the board)
const alarmed = new Set(); // ids whose arrival has already sounded
const TITLE = document.title;
const SOUND_KEY = "board-sound";
let offsetMs = 0; // gateway clock minus this browser's clock
let audio = null;

function now() {
  return Date.now() + offsetMs;
}

function syncClock(iso) {
  offsetMs = new Date(iso).getTime() - Date.now();
}

// -- sound: a short two-tone beep from the Web Audio API; only dispatchers, who must answer
// it, get the alarm. One click turns it on and the choice is remembered; after a reload the
// browser lets the sound start at the first key or click anywhere on the page.
const soundButton = document.getElementById("sound");

function soundOn() {
  return localStorage.getItem(SOUND_KEY) === "on";
}

function showSound() {
  soundButton.textContent = soundOn() ? t("sound_on") : t("enable_sound");
  soundButton.classList.toggle("on", soundOn());
  soundButton.setAttribute("aria-pressed", String(soundOn()));
}

function wakeAudio() {
  if (!soundOn()) return;
  audio = audio || new AudioContext();
  audio.resume();
  soundButton.classList.remove("attention");
}

function toggleSound() {
  localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on");
  showSound();
  wakeAudio();
  if (soundOn()) beep();
}

if (soundButton) {
  soundButton.addEventListener("click", toggleSound);
  showSound();
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(type, wakeAudio, { once: true, capture: true });
  }
}

function beep() {
  if (!soundButton) return;
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  if (!soundOn() || !audio || audio.state !== "running") {
    soundButton.classList.add("attention");
    return;
  }
  [0, 0.35].forEach((start, n) => {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = n ? 660 : 880;
    gain.gain.setValueAtTime(0.4, audio.currentTime + start);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + start + 0.3);
    osc.connect(gain).connect(audio.destination);
    osc.start(audio.currentTime + start);
    osc.stop(audio.currentTime + start + 0.3);
  });
}

// Waiting for a dispatcher: nobody acknowledged it (a forward step acknowledges too). A
// companion is answered with its main incident.
function unacknowledged(incident) {
  return !incident.acknowledged_at && !incident.parent_id && incident.state !== "closed";
}

// -- the countdown ------------------------------------------------------------------------
function clockOf(incident) {
  if (!CLOCKED.has(incident.incident_class)) {
    return { cls: "none", label: t("no_clock"), value: "—" };
  }
  if (incident.arrived_at) {
    return { cls: `stopped ${incident.sla}`, label: t("arrived_after"), value: duration(incident.arrival_s) };
  }
  const left = (new Date(incident.deadline_at).getTime() - now()) / 1000;
  if (left <= 0) return { cls: "breached", label: t("overdue"), value: "+" + duration(-left) };
  if (now() >= new Date(incident.warning_at).getTime()) {
    return { cls: "warning", label: `${t("warning")} · ${t("time_left")}`, value: duration(left) };
  }
  return { cls: "ok", label: t("time_left"), value: duration(left) };
}

// How long the passenger has waited, while no one is on site yet.
function waited(incident) {
  if (!CLOCKED.has(incident.incident_class) || incident.arrived_at) return "";
  return `${t("waited")} ${duration((now() - new Date(incident.opened_at).getTime()) / 1000)}`;
}

function drawClock(card, incident) {
  const clock = clockOf(incident);
  const box = card.querySelector(".clock");
  box.className = `clock ${clock.cls}`;
  box.querySelector(".clock-label").textContent = clock.label;
  box.querySelector(".clock-value").textContent = clock.value;
  box.querySelector(".clock-waited").textContent = waited(incident);
}

// Running clocks first, soonest deadline on top; then stopped or unclocked ones, oldest first.
function sortKey(incident) {
  const running = CLOCKED.has(incident.incident_class) && !incident.arrived_at;
  return [running ? 0 : 1, new Date(running ? incident.deadline_at : incident.opened_at).getTime()];
}

// -- cards --------------------------------------------------------------------------------
function newCard(id) {
  const card = cardTemplate.content.firstElementChild.cloneNode(true);
  card.dataset.id = id;
  cards.set(id, card);
  return card;
}

// A companion (same car, same episode) is shown inside its main incident's card; one whose
// main incident is not on the board (closed elsewhere) keeps a card of its own.
function onBoard(incident) {
  return !incident.parent_id || !items.has(incident.parent_id);
}

function companionsOf(id) {
  return [...items.values()].map((item) => item.incident).filter((i) => i.parent_id === id);
}

function kindName(kind) {
  return t("kind_" + kind, kind);
}

function fill(card, { incident, elevator }) {
  const q = (selector) => card.querySelector(selector);
  const link = q(".elevator");
  link.textContent = incident.elevator_id;
  link.href = "/elevators/" + encodeURIComponent(incident.elevator_id);
  q(".kind").textContent = kindName(incident.kind);
  q(".sev").textContent = t("sev_" + incident.severity, incident.severity);
  q(".opened").textContent = dateTime(incident.opened_at);
  q(".opened").dateTime = incident.opened_at;
  q(".deadline").textContent = CLOCKED.has(incident.incident_class) ? dateTime(incident.deadline_at) : t("no_clock");
  q(".source").textContent = t("src_" + incident.source, incident.source);
  q(".address").textContent = show(elevator.address);
  q(".address").title = show(elevator.address);
  q(".site").textContent = [elevator.site, elevator.district].filter(Boolean).join(" · ");
  q(".company").textContent = show(incident.maintenance_company || elevator.maintenance_company);
  q(".crew").textContent = show(incident.crew_id);
  q(".state").textContent = t("state_" + incident.state, incident.state);
  const companions = companionsOf(incident.id);
  q(".companions").textContent = companions.length
    ? `+ ${companions.map((c) => kindName(c.kind)).join(", ")}` : "";
  q(".companion-list").replaceChildren(...companions.map((c) => el("li", { class: "companion", "data-kind": c.kind },
    `${t("companions")}: ${kindName(c.kind)} · ${t("state_" + c.state, c.state)} · ${clockTime(c.opened_at)}`)));
  q(".timeline").replaceChildren(...(incident.timeline || []).map((e) =>
    el("li", {}, el("time", {}, clockTime(e.at)), ` ${e.what}`)));
  q(".drill-flag").hidden = !incident.drill;
  card.dataset.state = incident.state;
  card.dataset.kind = incident.kind;
  card.classList.toggle("flash", unacknowledged(incident));
  card.setAttribute("aria-label", `${incident.elevator_id} ${kindName(incident.kind)} ${t("state_" + incident.state)}`);
  if (canAct) {
    // Only the next steps show, so the row stays one line and Tab reaches what matters.
    const at = STATES.indexOf(incident.state);
    const shown = { acknowledge: !incident.acknowledged_at, dispatch: at < 2, arrival: at >= 1 && at < 3,
      release: at === 3 };
    for (const button of card.querySelectorAll("button.act")) {
      if (button.dataset.action in shown) button.hidden = !shown[button.dataset.action];
    }
    q(".crew-input").hidden = at >= 2;
    if (incident.crew_id && !q(".crew-input").value) q(".crew-input").value = incident.crew_id;
    // Closing is the step after release; before it (a false alarm) it waits under the details.
    const closeGroup = q(".close-group");
    const home = at >= 3 ? q(".actions") : q(".more-actions");
    if (closeGroup.parentElement !== home) home.append(closeGroup);
  }
  drawClock(card, incident);
}

function render() {
  const ordered = [...items.values()].sort((a, b) => {
    const [x, y] = [sortKey(a.incident), sortKey(b.incident)];
    return x[0] - y[0] || x[1] - y[1];
  });
  const shown = ordered.filter((item) => onBoard(item.incident));
  for (const [id, card] of cards) {
    if (!items.has(id) || !onBoard(items.get(id).incident)) {
      card.remove();
      cards.delete(id);
    }
  }
  shown.forEach((item, index) => {
    const card = cards.get(item.incident.id) || newCard(item.incident.id);
    fill(card, item);
    // Move only what is out of place: moving a node would take the keyboard focus away.
    if (board.children[index] !== card) board.insertBefore(card, board.children[index] || null);
  });
  document.getElementById("count").textContent = String(shown.length);
  document.getElementById("empty").hidden = shown.length > 0;
  const waiting = shown.filter((item) => unacknowledged(item.incident)).length;
  const unacked = document.getElementById("unacked");
  unacked.textContent = t("unacked").replace("{n}", waiting);
  unacked.hidden = waiting === 0;
  document.title = waiting ? `(${waiting}) ${TITLE}` : TITLE;
  let fresh = false;
  for (const { incident } of items.values()) {
    if (unacknowledged(incident) && !alarmed.has(incident.id)) {
      alarmed.add(incident.id);
      fresh = true;
    }
  }
  if (fresh) beep();
}

function put(item) {
  if (item.incident.state === "closed") items.delete(item.incident.id);
  else items.set(item.incident.id, { ...items.get(item.incident.id), ...item });
}

// -- live updates -------------------------------------------------------------------------
const link = document.getElementById("link");

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    link.textContent = t("connected");
    link.className = "link up";
  });
  source.addEventListener("error", () => {
    link.textContent = t("reconnecting");
    link.className = "link down";
  });
  source.addEventListener("snapshot", (event) => {
    const data = JSON.parse(event.data);
    syncClock(data.now);
    items.clear();
    data.items.forEach(put);
    render();
  });
  source.addEventListener("incident", (event) => {
    put(JSON.parse(event.data));
    render();
  });
  source.addEventListener("tick", (event) => syncClock(JSON.parse(event.data).now));
}

setInterval(() => {
  for (const [id, card] of cards) drawClock(card, items.get(id).incident);
}, 500);

setInterval(() => {
  if ([...items.values()].some(({ incident }) => unacknowledged(incident))) beep();
}, REALERT_MS);

// -- actions (dispatchers only) -----------------------------------------------------------
const operator = document.getElementById("operator");
if (operator) {
  operator.value = localStorage.getItem("operator") || "";
  operator.addEventListener("change", () => localStorage.setItem("operator", operator.value.trim()));
}

// -- keyboard: move between rows, act on the focused one (never while typing in a field).
function focusedCard() {
  return document.activeElement?.closest?.(".card") || null;
}

function moveFocus(step) {
  const rows = [...board.children];
  if (!rows.length) return;
  const at = rows.indexOf(focusedCard());
  const next = at < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, at + step));
  rows[next].focus();
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, select, textarea")) return;
  const card = focusedCard();
  switch (event.key) {
    case "ArrowDown": case "j": moveFocus(1); break;
    case "ArrowUp": case "k": moveFocus(-1); break;
    case "Enter":
      if (!card || event.target !== card) return;
      card.querySelector(".details").open = !card.querySelector(".details").open;
      break;
    case "a": {
      const button = card?.querySelector('button[data-action="acknowledge"]');
      if (!button || button.hidden) return;
      act(button);
      break;
    }
    case "c": {
      const input = card?.querySelector(".crew-input");
      if (!input || input.hidden) return;
      input.focus();
      break;
    }
    case "s":
      if (soundButton) toggleSound();
      break;
    default:
      return;
  }
  event.preventDefault();
});

function bodyFor(action, incident, card) {
  const crew = card.querySelector(".crew-input").value.trim();
  switch (action) {
    case "acknowledge":
      return { by: (operator && operator.value.trim()) || document.body.dataset.role };
    case "dispatch":
      return crew ? { crew_id: crew } : null;
    case "arrival":
      return incident.crew_id || crew ? { crew_id: incident.crew_id || crew } : null;
    case "release":
      return {};
    case "close":
      return { resolution: card.querySelector(".resolution").value };
  }
}

async function act(button) {
  const card = button.closest(".card");
  const item = items.get(card.dataset.id);
  const body = bodyFor(button.dataset.action, item.incident, card);
  if (body === null) {
    toast(t("crew_needed"));
    card.querySelector(".crew-input").focus();
    return;
  }
  button.disabled = true;
  try {
    const path = `/api/incidents/${encodeURIComponent(item.incident.id)}/${button.dataset.action}`;
    put({ incident: await api("POST", path, body) });
    render();
  } catch (error) {
    toast(`${t("action_failed")}: ${error.message}`);
    button.disabled = false;
  }
}

if (canAct) {
  board.addEventListener("click", (event) => {
    const button = event.target.closest("button.act");
    if (button) act(button);
  });
  // Enter in the crew field dispatches (or records the arrival once dispatched).
  board.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !event.target.classList.contains("crew-input")) return;
    const card = event.target.closest(".card");
    const next = [...card.querySelectorAll('button[data-action="dispatch"], button[data-action="arrival"]')]
      .find((b) => !b.disabled && !b.hidden);
    if (next) act(next);
  });
}

// A drill: an entrapment exercise on one elevator, run like any other incident and left out
// of every figure; its card comes back on the event stream like any other.
document.getElementById("drill")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("drill-elevator");
  const body = { elevator_id: input.value.trim(), kind: "entrapment", source: "other", drill: true };
  try {
    await api("POST", "/api/incidents", body);
    input.value = "";
  } catch (error) {
    toast(`${t("action_failed")}: ${error.message}`);
  }
});

connect();

// -- webhooks: an endpoint that keeps failing (the regulator's, a rescue station's) is named
// here, from /api/health, so dispatch knows to call instead.
const webhooks = document.getElementById("webhooks");

async function checkWebhooks() {
  try {
    const health = await (await fetch("/api/health")).json();
    const failing = Object.entries(health.webhooks || {}).filter(([, w]) => w.failing_since);
    webhooks.textContent = failing
      .map(([name, w]) =>
        t("webhook_failing")
          .replace("{name}", name)
          .replace("{since}", new Date(w.failing_since).toLocaleTimeString()),
      )
      .join(" · ");
    webhooks.hidden = failing.length === 0;
  } catch {
    // The gateway is away: the event stream's status says so.
  }
}
checkWebhooks();
setInterval(checkWebhooks, 15000);
