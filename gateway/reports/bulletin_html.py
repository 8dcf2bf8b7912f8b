"""The bulletin as HTML: one `<article>` that the regulator page embeds and that the CLI
wraps into a self-contained file (inline CSS and SVG, nothing fetched, nothing run) to mail,
print or turn into a PDF. Headers in Chinese and English, times local, durations mm:ss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from gateway.reports._base import NOT_RECORDED, UNREGISTERED
from gateway.reports.bulletin import Bulletin, Figures, Ranked
from gateway.reports.rescue import HistogramBin

# One stylesheet for the page and the file: the console links it, the file inlines it.
CSS_PATH: Final = Path(__file__).parent.parent / "web" / "static" / "bulletin.css"
DASH: Final = "—"

# Bilingual names of what the bulletin shows (zh, en).
GROUP_NAMES: Final = {
    UNREGISTERED: ("未登记电梯", "unregistered"),
    NOT_RECORDED: ("未填写", "not recorded"),
}
KIND_NAMES: Final = {
    "entrapment": ("困人", "Entrapment"),
    "ALARM_BUTTON": ("报警按钮", "Alarm button"),
    "STOP_OUTSIDE_DOOR_ZONE": ("非平层停梯", "Stopped outside door zone"),
    "DOOR_OPEN_WHILE_MOVING": ("开门走梯", "Door open while moving"),
    "UNINTENDED_MOVEMENT": ("轿厢意外移动", "Unintended car movement"),
    "OVERSPEED": ("超速", "Overspeed"),
    "OVERTRAVEL_TOP": ("冲顶", "Overtravel at top"),
    "OVERTRAVEL_BOTTOM": ("蹲底", "Overtravel at bottom"),
    "SAFETY_CIRCUIT_OPEN": ("安全回路断路", "Safety circuit open"),
    "DOOR_LOCK_FAULT": ("门锁回路故障", "Door lock fault"),
    "DOOR_FAIL_TO_OPEN": ("开门故障", "Door fails to open"),
    "DOOR_FAIL_TO_CLOSE": ("关门故障", "Door fails to close"),
    "DOOR_REPEATED_CYCLING": ("反复开关门", "Door cycling repeatedly"),
    "POWER_FAILURE": ("停电", "Power failure"),
    "CONTROLLER_FAULT": ("控制系统故障", "Controller fault"),
}


STATUS_NAMES: Final = {
    "overdue": ("已逾期", "overdue"),
    "due": ("即将到期", "due"),
    "unknown": ("无日期", "no date"),
    "out_of_service": ("停用", "out of service"),
    "offline": ("离线", "offline"),
}


def bilingual(zh: str, en: str) -> str:
    return f'<span lang="zh-CN">{escape(zh)}</span> <span class="en" lang="en">{escape(en)}</span>'


def mmss(seconds: float | None) -> str:
    """Minutes and seconds, rounded to the second; minutes go past 59 (75:03)."""
    if seconds is None:
        return DASH
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f} %"


def local(at: datetime | None, zone: ZoneInfo) -> str:
    return DASH if at is None else at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def group_name(group: str | None) -> str:
    if group is None:
        return DASH
    names = GROUP_NAMES.get(group)
    return bilingual(*names) if names else escape(group)


def kind_name(kind: str) -> str:
    names = KIND_NAMES.get(kind)
    return bilingual(*names) if names else escape(kind)


# -- headline ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Headline:
    key: str
    zh: str
    en: str
    show: Callable[[Figures], str]
    detail: Callable[[Figures], str] = lambda _f: ""


def _count(f: Figures, part: int, whole: int) -> str:
    return f"{part} / {whole}" if whole else ""


HEADLINES: Final = (
    _Headline("entrapments", "困人", "Entrapments", lambda f: str(f.entrapments),
              lambda f: f"事故 accidents {f.accidents}" if f.accidents else ""),
    _Headline("per-100", "每百台每月困人", "Per 100 elevators per month",
              lambda f: DASH if f.per_100_per_month is None else f"{f.per_100_per_month:.2f}",
              lambda f: f"{f.elevators} 台 elevators"),
    _Headline("response", "3 分钟响应率", "3-minute response rate", lambda f: pct(f.response_pct),
              lambda f: _count(f, f.responded_in_time, f.responses)),
    _Headline("arrival-rate", "30 分钟到场率", "30-minute arrival rate",
              lambda f: pct(f.arrival_pct),
              lambda f: _count(f, f.arrived_in_time, f.arrival_outcomes)),
    _Headline("arrival-avg", "平均到场", "Average arrival", lambda f: mmss(f.arrival_avg_s)),
    _Headline("arrival-p90", "90% 到场", "90th percentile arrival",
              lambda f: mmss(f.arrival_p90_s)),
    _Headline("rescue-avg", "平均现场救援", "Average on-site rescue",
              lambda f: mmss(f.rescue_avg_s),
              lambda _f: "到场 → 解救 arrival → release"),
    _Headline("breaches", "超时到场", "Breaches", lambda f: str(f.breaches),
              lambda _f: "超过 30 分钟 over 30 min"),
)  # fmt: skip


def _headline(b: Bulletin) -> str:
    tiles = []
    for h in HEADLINES:
        now, before = h.show(b.current), h.show(b.previous)
        bad = " bad" if h.key == "breaches" and b.current.breaches else ""
        tiles.append(
            f'<div class="figure{bad}" data-figure="{h.key}"><div class="label">'
            f"{bilingual(h.zh, h.en)}</div>"
            f'<div class="value">{escape(now)}</div>'
            f'<div class="detail">{escape(h.detail(b.current))}</div>'
            f'<div class="previous">上期 previous: <span class="prev-value">{escape(before)}'
            f"</span></div></div>"
        )
    return f'<section class="headline">{"".join(tiles)}</section>'


# -- tables --------------------------------------------------------------------------------
def _table(
    table_id: str, head: Sequence[tuple[str, str, bool]], rows: Sequence[Sequence[str]]
) -> str:
    """`head`: (zh, en, numeric) per column; cells are HTML already escaped."""
    if not rows:
        return f'<p class="none" id="{table_id}">{bilingual("无", "none")}</p>'
    numeric = [n for _zh, _en, n in head]
    th = "".join(
        f'<th{" class=num" if n else ""}>{escape(zh)}<br><span class="en">{escape(en)}</span></th>'
        for zh, en, n in head
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if numeric[k] else ''}>{c}</td>" for k, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


_RANK_HEAD: Final = (
    ("排名", "Rank", True),
    ("", "", False),  # the group's own header, set per table
    ("电梯", "Elevators", True),
    ("困人及事故", "Entrapments + accidents", True),
    ("超时", "Breaches", True),
    ("30 分钟到场率", "30-min arrival", True),
    ("3 分钟响应率", "3-min response", True),
    ("平均到场", "Avg arrival", True),
    ("90% 到场", "p90 arrival", True),
    ("平均救援", "Avg rescue", True),
)


def _ranking(table_id: str, zh: str, en: str, rows: Sequence[Ranked]) -> str:
    head = list(_RANK_HEAD)
    head[1] = (zh, en, False)
    return _table(
        table_id,
        head,
        [
            [
                str(n),
                group_name(r.group),
                str(r.figures.elevators),
                str(r.figures.rescues),
                str(r.figures.breaches),
                pct(r.figures.arrival_pct),
                pct(r.figures.response_pct),
                mmss(r.figures.arrival_avg_s),
                mmss(r.figures.arrival_p90_s),
                mmss(r.figures.rescue_avg_s),
            ]
            for n, r in enumerate(rows, 1)
        ],
    )


def _histogram(bins: Sequence[HistogramBin], limit_s: int) -> str:
    width, height, left, bottom, top = 660, 220, 36, 44, 24
    bar_w = (width - left - 8) / len(bins)
    peak = max((b.arrivals for b in bins), default=0) or 1
    scale = (height - bottom - top) / peak
    body = [
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 8}" '
        f'y2="{height - bottom}"/>'
    ]
    for n, b in enumerate(bins):
        x, h = left + n * bar_w, b.arrivals * scale
        label = f"{b.from_s // 60}–{b.to_s // 60}" if b.to_s is not None else f"≥{b.from_s // 60}"
        late = " late" if b.to_s is None or b.to_s > limit_s else ""
        body.append(
            f'<rect class="bar{late}" x="{x + 2:.1f}" y="{height - bottom - h:.1f}" '
            f'width="{bar_w - 4:.1f}" height="{h:.1f}"><title>{label} min: {b.arrivals}'
            f"</title></rect>"
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14}" '
            f'text-anchor="middle">{label}</text>'
        )
        if b.arrivals:
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom - h - 4:.1f}" '
                f'text-anchor="middle">{b.arrivals}</text>'
            )
    limit_x = left + limit_s / (bins[0].to_s or 1) * bar_w
    body.append(
        f'<line id="limit-line" class="limit" x1="{limit_x:.1f}" y1="{top - 14}" '
        f'x2="{limit_x:.1f}" y2="{height - bottom}"/>'
        f'<text class="limit-text" x="{limit_x + 5:.1f}" y="{top - 4}">'
        f"{limit_s / 60:g} 分钟时限 {limit_s / 60:g}-minute limit</text>"
        f'<text x="{(width + left) / 2}" y="{height - 8}" text-anchor="middle">'
        f"到场用时（分钟）arrival time (minutes), 5-minute bins</text>"
    )
    return (
        f'<svg id="chart-arrival-histogram" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}"><title>Arrival-time histogram</title>{"".join(body)}</svg>'
    )


def _faults(b: Bulletin) -> str:
    return _table(
        "faults",
        (
            ("故障", "Fault", False),
            ("代码", "Code", False),
            ("次数", "Incidents", True),
            ("电梯", "Elevators", True),
            ("期末未结", "Open at end", True),
            ("上期", "Previous", True),
        ),
        [
            [
                kind_name(r.kind),
                f"<code>{escape(r.kind)}</code>",
                str(r.incidents),
                str(r.elevators),
                str(r.open_at_end),
                str(r.previous),
            ]
            for r in b.faults
        ],
    )


# -- compliance lists ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Column:
    field: str
    zh: str
    en: str
    kind: str = "text"  # text, group, time, date, mmss, arrival, number, ids, kind, status


@dataclass(frozen=True, slots=True)
class _List:
    section: str
    zh: str
    en: str
    columns: tuple[_Column, ...]


_C = _Column
LISTS: Final = (
    _List("breaches", "到场超时明细", "Arrival limit breaches", (
        _C("incident_id", "事件", "Incident"), _C("elevator_id", "电梯", "Elevator"),
        _C("maintenance_company", "维保单位", "Maintenance company", "group"),
        _C("district", "区域", "District", "group"),
        _C("opened_at", "报警时间", "Reported", "time"),
        _C("arrival_s", "到场用时", "Arrival", "arrival"),
    )),
    _List("blacklist-candidates", "黑名单候选（12 个月内超时 2 次）",
          "Blacklist candidates (2 breaches in 12 months)", (
        _C("maintenance_company", "维保单位", "Maintenance company", "group"),
        _C("breaches", "超时次数", "Breaches", "number"),
        _C("first_breach_at", "首次", "First", "time"),
        _C("last_breach_at", "末次", "Last", "time"),
        _C("incident_ids", "事件", "Incidents", "ids"),
    )),
    _List("accidents-unreported", "事故未在 1 小时内上报", "Accidents not reported within 1 h", (
        _C("incident_id", "事件", "Incident"), _C("elevator_id", "电梯", "Elevator"),
        _C("kind", "类型", "Kind", "kind"), _C("opened_at", "发生时间", "Opened", "time"),
        _C("report_deadline_at", "上报时限", "Report due", "time"),
        _C("regulator_reported_at", "上报时间", "Reported", "time"),
    )),
    _List("maintenance-overdue", "超期未维保（15 天）", "Maintenance overdue (15 days)", (
        _C("elevator_id", "电梯", "Elevator"),
        _C("maintenance_company", "维保单位", "Maintenance company", "group"),
        _C("last_visit", "上次维保", "Last visit", "date"),
        _C("days_since", "距今天数", "Days since", "number"),
    )),
    _List("inspections-due", "年度检验到期（30 天内）", "Annual inspections due (30 days)", (
        _C("elevator_id", "电梯", "Elevator"),
        _C("maintenance_company", "维保单位", "Maintenance company", "group"),
        _C("use_unit", "使用单位", "Use unit", "group"),
        _C("inspection_due", "检验到期", "Due", "date"),
        _C("days_left", "剩余天数", "Days left", "number"),
        _C("status", "状态", "Status", "status"),
    )),
    _List("outages-without-notice", "停用超 24 小时未公告", "Outages over 24 h without notice", (
        _C("elevator_id", "电梯", "Elevator"), _C("reason", "原因", "Reason", "status"),
        _C("since", "停用起", "Since", "time"), _C("hours", "小时", "Hours", "number"),
    )),
    _List("drills-missing", "未按期演练（6 个月）", "Drills missing (6 months)", (
        _C("maintenance_company", "维保单位", "Maintenance company", "group"),
        _C("last_drill_at", "上次演练", "Last drill", "time"),
        _C("days_since", "距今天数", "Days since", "number"),
    )),
    _List("repeated-entrapments", "反复困人（90 天内 3 次）",
          "Repeated entrapments (3 in 90 days)", (
        _C("elevator_id", "电梯", "Elevator"),
        _C("entrapments", "困人次数", "Entrapments", "number"),
        _C("first_at", "首次", "First", "time"), _C("last_at", "末次", "Last", "time"),
    )),
)  # fmt: skip
SECTIONS_SHOWN: Final = tuple(item.section for item in LISTS)


def _cell(value: Any, kind: str, zone: ZoneInfo) -> str:
    if kind == "group":
        return group_name(value)
    if kind == "arrival" and value is None:
        return bilingual("未到场", "not arrived")
    if value is None:
        return DASH
    if kind == "time":
        return local(value, zone)
    if kind == "date":
        return value.isoformat() if isinstance(value, date) else escape(str(value))
    if kind in ("mmss", "arrival"):
        return mmss(value)
    if kind == "ids":
        return escape(", ".join(value))
    if kind == "kind":
        return kind_name(value)
    if kind == "status":  # an inspection's status, or an outage's reason (`fault:<code>`)
        names = STATUS_NAMES.get(value)
        return bilingual(*names) if names else kind_name(value.removeprefix("fault:"))
    return escape(f"{value:g}" if isinstance(value, float) else str(value))


def _list(item: _List, rows: Sequence[Any], zone: ZoneInfo) -> str:
    head = [(c.zh, c.en, c.kind in ("number", "mmss", "arrival")) for c in item.columns]
    cells = [[_cell(getattr(r, c.field), c.kind, zone) for c in item.columns] for r in rows]
    return (
        f'<section class="list" data-section="{item.section}"><h3>{bilingual(item.zh, item.en)} '
        f'<span class="n">{len(rows)}</span></h3>{_table(f"list-{item.section}", head, cells)}'
        f"</section>"
    )


# -- definitions ---------------------------------------------------------------------------
DEFINITIONS: Final = (
    "Rescue figures count entrapments and accidents (the classes with a legal arrival limit); "
    "drills and incidents closed as false alarms are left out; faults are counted apart.",
    "Per 100 elevators per month: entrapments ÷ elevators ÷ months × 100, with a month of "
    "30.44 days and the registered elevators (plus any unregistered one with a rescue).",
    "3-minute response rate: rescues answered within 3 minutes of the report, the answer being "
    "the acknowledgement or the first forward step (dispatch, arrival, release, close) if that "
    "came first; over rescues answered or whose 3 minutes have run out.",
    "30-minute arrival rate: arrivals strictly before the incident's deadline (its district's "
    "limit, 30 minutes by default), over rescues whose arrival clock has an outcome.",
    "Arrival is from the report to the crew's arrival (the earliest evidence); on-site rescue "
    "from arrival to release. Averages are means; the 90th percentile is the value at rank "
    "⌈0.9 n⌉. Durations are minutes:seconds.",
    "The previous period has the same length and ends where this one starts. Periods are by the "
    "time of the report, in local time; compliance lists describe the end of the period.",
    "Rankings put the worst first: most breaches, then the lowest 30-minute arrival rate, the "
    "lowest 3-minute response rate and the longest average arrival.",
)
DEFINITIONS_ZH: Final = (
    "救援指标只统计困人与事故（有法定到场时限的类别），不含演练和误报；故障另表统计。"
    "3 分钟响应以接警或首个后续处置（派遣、到场、解救、结案）为准；"
    "30 分钟到场以事件本身的时限为准。"
)


# -- the whole -----------------------------------------------------------------------------
def article(b: Bulletin, lists: dict[str, list[Any]], zone: ZoneInfo, limit_s: int) -> str:
    """The bulletin as one `<article class="bulletin">`; `lists` are `reports.build`'s
    sections (those of `LISTS` are shown)."""
    period = f"{local(b.since, zone)} – {local(b.until, zone)}"
    previous = f"{local(b.previous_since, zone)} – {local(b.since, zone)}"
    compliance = "".join(_list(item, lists.get(item.section, []), zone) for item in LISTS)
    return (
        '<article class="bulletin">'
        f"<header><h1>{bilingual('电梯困人救援通报', 'Elevator entrapment rescue bulletin')}</h1>"
        f'<p class="period">{bilingual("统计期", "Period")} <strong id="period">{period}</strong>'
        f" ({escape(zone.key)}) · {bilingual('上期', 'previous')} {previous} · "
        f"{bilingual('清单截至', 'lists as of')} {local(b.as_of, zone)}</p></header>"
        f"<h2>{bilingual('主要指标', 'Headline figures')}</h2>{_headline(b)}"
        f"<h2>{bilingual('到场用时分布', 'Arrival times')}</h2>"
        f'<figure class="histogram">{_histogram(b.histogram, limit_s)}</figure>'
        f"<h2>{bilingual('维保单位排名（差者在前）', 'Maintenance companies, worst first')}</h2>"
        + _ranking("rank-companies", "维保单位", "Maintenance company", b.companies)
        + f"<h2>{bilingual('区域排名（差者在前）', 'Districts, worst first')}</h2>"
        + _ranking("rank-districts", "区域", "District", b.districts)
        + f"<h2>{bilingual('故障（不计入救援指标）', 'Faults (not in the rescue figures)')}</h2>"
        + _faults(b)
        + f"<h2>{bilingual('合规清单', 'Compliance lists')}</h2>{compliance}"
        + f'<h2>{bilingual("定义", "Definitions")}</h2><div class="definitions">'
        + f'<p lang="zh-CN">{escape(DEFINITIONS_ZH)}</p>'
        + "".join(f"<p>{escape(d)}</p>" for d in DEFINITIONS)
        + "</div></article>"
    )


def document(b: Bulletin, lists: dict[str, list[Any]], zone: ZoneInfo, limit_s: int) -> str:
    """A self-contained HTML file of the bulletin."""
    css = CSS_PATH.read_text(encoding="utf-8")
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Nothing may be fetched or run: the file must work offline and as a mail attachment.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>电梯困人救援通报 Elevator entrapment rescue bulletin "
        f"{local(b.since, zone)} – {local(b.until, zone)}</title><style>{css}</style></head>"
        f'<body class="paper">{article(b, lists, zone, limit_s)}</body></html>\n'
    )
