"""A run folder → one self-contained HTML file (no network: the SVG, CSS and JS are inline).

Every piece of user text (comments, tags, items, LLM-written names) is escaped: the charts and
cards are rendered here with `html.escape`, and the data the hover script reads is JSON with
`<`, `>` and `&` escaped, so a comment holding HTML or JS shows as text and never runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from html import escape
from pathlib import Path

from tagger.errors import OutputError
from tagger.run.load import (Run, ancestors, groups_phrase, list_cell, load_run, parent_of, segment_tree, sensitive_badge,
                             text_cell, tree_columns, walk_tree)
from tagger.run.report_text import budget_lines

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#2f4b7c", "#a05195", "#d45087", "#665191", "#008080", "#bc5090", "#7a5195")
NO_SEGMENT = "#bbbbbb"
MAP_W, MAP_H, PAD = 640, 420, 16
# More dots than this make a slow page and a blot; larger runs show a seeded sample.
MAX_MAP_USERS = 5000
# The tree's name column narrows by one indent per level, so every bar starts at the same x.
TREE_NAME_W, TREE_BAR_W, TREE_INDENT = 210, 260, 22

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#fff;border-bottom:1px solid #ddd;padding:14px 24px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
main{padding:0 24px 32px;max-width:1360px}
.meta{color:#666;font-size:13px}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.panel{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px}
svg text{font-size:12px;fill:#333}
.dot{stroke:#fff;stroke-width:.6;cursor:pointer} .dot.dim{opacity:.12}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:6px 8px;border-radius:4px;
  font-size:12px;max-width:320px;display:none;z-index:5}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px}
.card{background:#fff;border:1px solid #ddd;border-left:6px solid var(--c);border-radius:8px;padding:12px 14px}
.card h3{margin:0 0 2px;font-size:16px} .card .sub{color:#666;font-size:12px;margin-bottom:6px}
.chip{display:inline-block;background:#eef1f5;border-radius:10px;padding:1px 8px;margin:2px 3px 2px 0;font-size:12px}
blockquote{margin:4px 0;padding:2px 8px;border-left:3px solid #ddd;color:#444;font-style:italic}
.card ul{margin:4px 0;padding-left:18px} .label{font-weight:600;font-size:12px;margin-top:8px;color:#555}
.bar{cursor:pointer}
.unstable{color:#b00020;font-weight:600}
.warning,td.low{color:#b00020;font-weight:600}
.tree,.tree ul{list-style:none;margin:0;padding:0}
.tree ul{margin-left:6px;padding-left:15px;border-left:1px solid #ddd}
.tree>li{margin-bottom:8px}
.sensitive{font-size:11px;font-weight:normal;color:#8a1c1c;background:#fbeaea;border-radius:3px;padding:1px 4px}
.node-row{display:flex;align-items:center;gap:8px;min-height:24px;cursor:pointer;border-radius:4px}
.node-row:hover,.node-row.chosen{background:#eef1f5}
.node-row.group .node-name{font-weight:600}
.node-name{flex:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.node-bar{flex:none;display:flex;height:14px;border-radius:3px;overflow:hidden}
.node-bar span+span{border-left:1px solid #fff}
.node-size{color:#555;font-size:12px;white-space:nowrap}
.node-desc{color:#666;font-size:12px;margin:0 0 2px;max-width:560px}
"""

# Hover shows user, segment and tags; clicking a bar, tree row or legend entry highlights one segment
# (a group: the users of every leaf beneath it).
SCRIPT = """
(function(){
  var data = JSON.parse(document.getElementById('tagger-data').textContent);
  var tip = document.getElementById('tip');
  var dots = document.querySelectorAll('.dot');
  function show(ev){
    var u = data.users[+ev.target.getAttribute('data-i')];
    tip.textContent = '';
    var head = document.createElement('b'); head.textContent = u.user; tip.appendChild(head);
    var seg = document.createElement('div'); seg.textContent = u.segment; tip.appendChild(seg);
    var tags = document.createElement('div'); tags.textContent = u.tags.length ? u.tags.join(', ') : '(no tags)';
    tip.appendChild(tags);
    tip.style.display = 'block';
    tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - 330) + 'px';
    tip.style.top = (ev.clientY + 12) + 'px';
  }
  function hide(){ tip.style.display = 'none'; }
  for (var i = 0; i < dots.length; i++){
    dots[i].addEventListener('mousemove', show); dots[i].addEventListener('mouseleave', hide);
  }
  var chosen = null;
  function highlight(seg){
    chosen = (chosen === seg) ? null : seg;
    for (var i = 0; i < dots.length; i++){
      var on = chosen === null || (' ' + dots[i].getAttribute('data-a') + ' ').indexOf(' ' + chosen + ' ') >= 0;
      dots[i].classList.toggle('dim', !on);
    }
    for (var k = 0; k < bars.length; k++){
      bars[k].classList.toggle('chosen', bars[k].getAttribute('data-seg') === chosen);
    }
  }
  var bars = document.querySelectorAll('[data-seg]');
  for (var j = 0; j < bars.length; j++){
    bars[j].addEventListener('click', function(ev){ highlight(ev.currentTarget.getAttribute('data-seg')); });
  }
  document.body.setAttribute('data-rendered', data.users.length + ' users');
})();
"""


def colour(segment_id: int) -> str:
    return PALETTE[segment_id % len(PALETTE)] if segment_id >= 0 else NO_SEGMENT


def render_report(run: Run) -> str:
    counts = run.summary.counts
    segments = tree_columns(run.segments)
    leaves, tree = segments[segments["level"] == 0], segment_tree(segments)
    grouped = any(node["children"] for node in tree)
    names, parents = _names(segments), parent_of(segments)
    title = (f"tagger: {len(leaves)} segments of {counts.users or len(run.users)} users"
             f"{groups_phrase(tree)}")
    meta = (f"model {run.summary.model} · embedder {run.summary.embedder} · "
            f"tagged {counts.tagged}/{counts.users} ({counts.failed} failed) · "
            f"{counts.noise_assigned_to_nearest} joined their nearest segment · "
            f"{counts.unsegmented} unsegmented · wall time {run.summary.wall_time_s:.0f} s")
    rows = _map_rows(len(run.users))
    sampled = f" ({len(rows)} of {len(run.users)} users, a random sample)" if len(rows) < len(run.users) else ""
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(title)}</h1><div class=\"meta\">{escape(meta)}</div></header><main>",
        "<div class=\"row\">",
        _tree_panel(tree, segments) if grouped else
        f"<div><h2>Segment sizes</h2><div class=\"panel\">{_size_chart(leaves)}</div></div>",
        (f"<div><h2>Map of users</h2><div class=\"panel\">{_map(run, rows)}</div>"
         f"<div class=\"meta\">2-D projection (PCA) of the user vectors{sampled}; hover a dot, "
         "click a bar or a legend entry to highlight a segment.</div></div>"),
        "</div>",
        _stability_section(run.summary.stability.model_dump() if run.summary.stability else None),
        _agreement_section(run.summary),
        "<h2>Segments</h2><div class=\"cards\">",
        "".join(_card(row, parents[int(row.segment_id)], names.get(parents[int(row.segment_id)], ""))
                for row in leaves.itertuples()),
        "</div></main><div id=\"tip\"></div>",
        f"<script type=\"application/json\" id=\"tagger-data\">{_json_for_script(_hover_data(run, rows))}</script>",
        f"<script>{SCRIPT}</script></body></html>\n",
    ])


def write_report(run_dir: Path | str, dest: Path | str | None = None) -> Path:
    """Render `run_dir`'s report to `dest` (default RUN_DIR/report.html), written atomically."""
    run = load_run(run_dir)
    dest = Path(dest) if dest is not None else Path(run_dir) / "report.html"
    if not dest.parent.is_dir():
        raise OutputError(f"folder not found: {dest.parent}; create it or pass another --out")
    text = render_report(run)
    handle, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a report is meant to be shared
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _json_for_script(data) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _map_rows(n: int) -> list[int]:
    if n <= MAX_MAP_USERS:
        return list(range(n))
    import numpy as np

    return sorted(np.random.default_rng(0).choice(n, MAX_MAP_USERS, replace=False).tolist())


def _hover_data(run: Run, rows: list[int]) -> dict:
    names, parents = _names(run.segments), parent_of(run.segments)
    labels = {sid: f"{name} (in {names[parents[sid]]})" if parents[sid] >= 0 else name for sid, name in names.items()}
    users = run.users.iloc[rows]
    return {"users": [{"user": str(u.user_id), "segment": labels.get(int(u.segment_id), "unsegmented"),
                       "tags": list(u.tags)} for u in users.itertuples()]}


def _names(segments) -> dict[int, str]:
    return dict(zip(segments["segment_id"].astype(int), segments["name"].astype(str), strict=True))


def _lineage(segments) -> dict[int, str]:
    """Each segment id with the ids above it, as a dot's `data-a`: clicking any of them lights the dot."""
    parents = parent_of(segments)
    return {sid: " ".join(map(str, [sid, *ancestors(parents, sid)])) for sid in parents}


def _tree_panel(tree: list[dict], segments) -> str:
    """Each top-level segment with the segments beneath it as an indented list; every row has a
    bar on one shared scale, a group's bar made of its leaves' colours in proportion."""
    largest = max(node["size"] for node in tree) or 1
    about = {int(r.segment_id): " · ".join(t for t in (text_cell(getattr(r, "description", "")),
                                                       text_cell(getattr(r, "iab_path", ""))) if t)
             for r in segments.itertuples()}
    body = "".join(_tree_node(node, 0, largest, about) for node in tree)
    return (f"<div><h2>Segment tree</h2><div class=\"panel\"><ul class=\"tree\" aria-label=\"segment tree\">{body}"
            "</ul></div><div class=\"meta\">Largest first; bar length is users. "
            "Click a row to highlight its users on the map.</div></div>")


def _tree_node(node: dict, depth: int, largest: int, about: dict[int, str]) -> str:
    sid, group = node["segment_id"], bool(node["children"])
    leaves = [n for n in walk_tree([node]) if n["level"] == 0] or [node]
    bar = "".join(f"<span style=\"flex:{leaf['size']};background:{colour(leaf['segment_id'])}\"></span>"
                  for leaf in leaves)
    hover = " · ".join(t for t in (node["name"], about.get(sid, "")) if t)
    width = max(2, round(TREE_BAR_W * node["size"] / largest))
    row = (f"<div class=\"node-row {'group' if group else 'leaf'}\" data-seg=\"{sid}\" data-depth=\"{depth}\">"
           f"<span class=\"node-name\" style=\"width:{TREE_NAME_W - depth * TREE_INDENT}px\" title=\"{escape(hover)}\">"
           f"{escape(node['name'])}</span>{_sensitive_node(node)}"
           f"<span class=\"node-bar\" style=\"width:{width}px\">{bar}</span>"
           f"<span class=\"node-size\">{node['size']} users ({node['share']:.0%})</span></div>")
    desc = f"<div class=\"node-desc\">{escape(about[sid])}</div>" if group and about.get(sid) else ""
    kids = "".join(_tree_node(child, depth + 1, largest, about) for child in node["children"])
    return f"<li id=\"node-{sid}\">{row}{desc}{f'<ul>{kids}</ul>' if kids else ''}</li>"


def _size_chart(leaves) -> str:
    rows = list(leaves.sort_values(["size", "segment_id"], ascending=[False, True]).itertuples())
    bar_h, label_w, bar_w = 24, 190, 260
    largest = max([int(r.size) for r in rows] or [1])
    height = bar_h * len(rows) + 8
    parts = [f"<svg width=\"{label_w + bar_w + 90}\" height=\"{height}\" role=\"img\" aria-label=\"segment sizes\">"]
    for k, r in enumerate(rows):
        y = 4 + k * bar_h
        w = max(2, round(bar_w * int(r.size) / largest))
        name = escape(_short(r.name, 28))
        parts.append(
            f"<g class=\"bar\" data-seg=\"{int(r.segment_id)}\"><title>{escape(r.name)}</title>"
            f"<text x=\"{label_w - 6}\" y=\"{y + 16}\" text-anchor=\"end\">{name}</text>"
            f"<rect x=\"{label_w}\" y=\"{y + 3}\" width=\"{w}\" height=\"{bar_h - 6}\" rx=\"3\" fill=\"{colour(int(r.segment_id))}\"/>"
            f"<text x=\"{label_w + w + 6}\" y=\"{y + 16}\">{int(r.size)} ({float(r.share):.0%})</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def _map(run: Run, rows: list[int]) -> str:
    if not {"x", "y"} <= set(run.users.columns):
        return "<p class=\"meta\">This run has no map coordinates; rerun <code>tagger segment</code> to add them.</p>"
    users = run.users.iloc[rows]
    xs, ys = users["x"].astype(float).tolist(), users["y"].astype(float).tolist()
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (MAP_W - 2 * PAD) / ((x1 - x0) or 1.0)
    sy = (MAP_H - 2 * PAD) / ((y1 - y0) or 1.0)
    segments = tree_columns(run.segments)
    names, lineage = _names(segments[segments["level"] == 0]), _lineage(segments)
    parts = [f"<svg width=\"{MAP_W}\" height=\"{MAP_H}\" viewBox=\"0 0 {MAP_W} {MAP_H}\" role=\"img\" aria-label=\"map of users\">"]
    for i, u in enumerate(users.itertuples()):
        if not (math.isfinite(xs[i]) and math.isfinite(ys[i])):
            continue
        seg = int(u.segment_id)
        cx = PAD + (xs[i] - x0) * sx
        cy = MAP_H - PAD - (ys[i] - y0) * sy
        hover = f"{u.user_id} · {names.get(seg, 'unsegmented')} · {', '.join(u.tags)}"
        parts.append(f"<circle class=\"dot\" data-i=\"{i}\" data-s=\"{seg}\" data-a=\"{lineage.get(seg, seg)}\" "
                     f"cx=\"{cx:.1f}\" cy=\"{cy:.1f}\" r=\"4\" "
                     f"fill=\"{colour(seg)}\"><title>{escape(hover)}</title></circle>")
    parts.append(f"</svg><div style=\"max-width:{MAP_W}px\">")
    for seg, name in names.items():
        parts.append(f"<span class=\"chip\" data-seg=\"{seg}\" style=\"cursor:pointer\">"
                     f"<span style=\"color:{colour(seg)}\">●</span> {escape(_short(name, 32))}</span>")
    if (users["segment_id"] < 0).any():
        parts.append(f"<span class=\"chip\"><span style=\"color:{NO_SEGMENT}\">●</span> unsegmented</span>")
    parts.append("</div>")
    return "".join(parts)


def _stability_section(stability: dict | None) -> str:
    """Mean/min ARI of the reruns, and per segment the best-match Jaccard as a bar against the
    unstable line: which segments to trust. Empty when the run had no --stability."""
    if not stability or not stability.get("segments"):
        return ""
    rows = sorted(stability["segments"], key=lambda r: (r["mean_jaccard"], r["segment_id"]))
    line = float(stability.get("unstable_below_jaccard", 0.6))
    bar_h, label_w, bar_w = 22, 190, 260
    parts = [f"<svg width=\"{label_w + bar_w + 150}\" height=\"{bar_h * len(rows) + 8}\" role=\"img\" "
             "aria-label=\"segment stability\">"]
    for k, r in enumerate(rows):
        y, value = 4 + k * bar_h, float(r["mean_jaccard"])
        verdict = "stable" if r["stable"] else "unstable"
        parts.append(
            f"<g class=\"jaccard {verdict}\" data-seg=\"{int(r['segment_id'])}\"><title>{escape(r['segment_name'])}</title>"
            f"<text x=\"{label_w - 6}\" y=\"{y + 15}\" text-anchor=\"end\">{escape(_short(r['segment_name'], 28))}</text>"
            f"<rect x=\"{label_w}\" y=\"{y + 3}\" width=\"{max(2, round(bar_w * value))}\" height=\"{bar_h - 6}\" rx=\"3\" "
            f"fill=\"{colour(int(r['segment_id'])) if r['stable'] else NO_SEGMENT}\"/>"
            f"<text x=\"{label_w + bar_w + 6}\" y=\"{y + 15}\">{value:.2f} (min {float(r['min_jaccard']):.2f}) {verdict}</text></g>")
    x = label_w + round(bar_w * line)
    parts.append(f"<line x1=\"{x}\" x2=\"{x}\" y1=\"0\" y2=\"{bar_h * len(rows) + 8}\" stroke=\"#b00020\" "
                 "stroke-dasharray=\"4 3\"/></svg>")
    names = {r["segment_id"]: r["segment_name"] for r in stability["segments"]}
    unstable = ", ".join(escape(names.get(s, f"segment {s}")) for s in stability.get("unstable", []))
    summary = (f"{stability['runs']} runs, each on a {float(stability.get('sample_fraction', 1)):.0%} sample: "
               f"mean pairwise ARI <b class=\"ari-mean\">{float(stability['mean_ari']):.2f}</b>, "
               f"min <b class=\"ari-min\">{float(stability['min_ari']):.2f}</b>; segments per run "
               f"{escape(', '.join(map(str, stability.get('segments_per_run', []))))}.")
    return "".join([
        "<section id=\"stability\"><h2>Stability</h2><div class=\"panel\">",
        f"<p>{summary}</p>", "".join(parts),
        f"<p class=\"meta\">Bar: mean best-match Jaccard of the segment's members over the reruns; dashed line: "
        f"{line:.2f}, below it a segment is unstable.</p>",
        f"<p>Unstable: <span class=\"unstable\">{unstable}</span></p>" if unstable else "<p>No unstable segments.</p>",
        "</div></section>",
    ])


def _agreement_section(summary) -> str:
    """How many users the LLM read, and the distilled placer's held-out agreement with the full
    vectors, overall and per segment, with the warning line below its threshold. Empty for a run
    without a placer (--tag-weight 1, or made before placers)."""
    agreement = summary.agreement
    if not agreement:
        return ""
    rows = "".join(f"<tr><td>{r.segment_id}</td><td>{escape(r.name)}</td><td>{r.users}</td>"
                   f"<td class=\"{'low' if r.agreement < agreement.warn_below else ''}\">{r.agreement:.0%}</td></tr>"
                   for r in agreement.per_segment)
    return "".join([
        "<section id=\"agreement\"><h2>LLM budget and placer agreement</h2><div class=\"panel\">",
        "".join(f"<p class=\"{'warning' if line.startswith('warning') else ''}\">{escape(line)}</p>"
                for line in budget_lines(summary)),
        "<table><tr><th>id</th><th>segment</th><th>read users held out</th><th>agreement</th></tr>",
        rows, "</table></div></section>",
    ])


def _card(row, parent_id: int, parent: str) -> str:
    tags = "".join(f"<span class=\"chip\">{escape(t)}</span>" for t in row.top_tags) or "<span class=\"meta\">none</span>"
    quotes = "".join(f"<blockquote>“{escape(q)}”</blockquote>" for q in row.evidence)
    items = "".join(f"<li>{escape(i)}</li>" for i in row.top_items)
    return "".join([
        f"<section class=\"card\" id=\"segment-{int(row.segment_id)}\" style=\"--c:{colour(int(row.segment_id))}\">",
        f"<h3>{escape(row.name)}{_sensitive(row)}</h3>",
        f"<div class=\"sub\">segment {int(row.segment_id)}{_in_parent(parent_id, parent)} · {int(row.size)} users "
        f"({float(row.share):.0%}) · named by {escape(row.named_by)}{_person(row)}</div>",
        f"<div>{escape(row.description)}</div>",
        (f"<div class=\"meta\">IAB {escape(str(row.iab_id))} · {escape(str(row.iab_path))}</div>"
         if getattr(row, "iab_path", "") else ""),
        f"<div class=\"label\">Top tags</div><div>{tags}</div>",
        f"<div class=\"label\">Evidence</div>{quotes}" if quotes else "",
        f"<div class=\"label\">Top items</div><ul>{items}</ul>" if items else "",
        "</section>",
    ])


def _sensitive_node(node: dict) -> str:
    category = node.get("sensitive", "")
    return f"<span class=\"sensitive\">{escape(sensitive_badge(category))}</span>" if category else ""


def _sensitive(row) -> str:
    category = text_cell(getattr(row, "sensitive", ""))
    return f" <span class=\"sensitive\">{escape(sensitive_badge(category))}</span>" if category else ""
def _person(row) -> str:
    """' · set by a person: name, members' for what `tagger edit` set."""
    fields = list_cell(getattr(row, "set_by_person", None))
    return f" · <span class=\"person\">set by a person: {escape(', '.join(fields))}</span>" if fields else ""


def _in_parent(parent_id: int, parent: str) -> str:
    return f" · in <a href=\"#node-{int(parent_id)}\">{escape(parent)}</a>" if parent_id >= 0 and parent else ""


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
