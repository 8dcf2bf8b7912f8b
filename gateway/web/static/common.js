// Shared by every page: labels, the API client, formatting, SVG drawing. Plain ES2020, no build.
"use strict";

const T = JSON.parse(document.getElementById("i18n").textContent);
const CONFIG = JSON.parse(document.getElementById("console-config").textContent);

function t(key, fallback) {
  return T[key] ?? fallback ?? key;
}

// The token travels in the HttpOnly cookie; the extra header marks the request as the
// console's own, which is what the API requires of cookie-authenticated POSTs (CSRF).
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers[CONFIG.csrf_header] = "1";
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    location.assign("/login?next=" + encodeURIComponent(location.pathname));
    throw new Error(response.statusText);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error((data && (data.message || data.detail)) || response.statusText);
  }
  return data;
}

function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), 8000);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function pad2(n) {
  return String(n).padStart(2, "0");
}

// 754 -> "12:34", 4000 -> "1:06:40"
function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${pad2(m)}:${pad2(s % 60)}` : `${pad2(m)}:${pad2(s % 60)}`;
}

function clockTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function dateTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${clockTime(iso)}`;
}

function yesNo(value) {
  return value === true ? t("yes") : value === false ? t("no") : t("unknown");
}

function show(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

document.getElementById("lang-switch").addEventListener("click", (event) => {
  const button = event.currentTarget;
  document.cookie = `${button.dataset.cookie}=${button.dataset.lang}; path=/; max-age=31536000; SameSite=Strict`;
  location.reload();
});
