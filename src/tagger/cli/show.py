"""`tagger show RUN_DIR [--tree | --segment ID|NAME | --user ID] [--json]`"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("show")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--tree", is_flag=True, help="the segment tree: each top-level segment with the segments beneath it")
@click.option("--segment", "segment_ref", metavar="ID|NAME",
              help="one segment (a leaf or a parent): description, sample members, why they belong")
@click.option("--user", "user_id", metavar="ID", help="one user: tags with evidence, segment, parent, strength")
@click.option("--sample", type=int, default=5, show_default=True, help="members shown with --segment")
@click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
def command(run_dir, tree, segment_ref, user_id, sample, as_json) -> None:
    """Print the segments of a run folder, its segment tree, or one segment or user in detail."""
    from tagger.errors import ConfigError
    from tagger.run.load import load_run, segment_detail, segment_overview, segment_tree, user_detail

    if sum([tree, segment_ref is not None, user_id is not None]) > 1:
        raise ConfigError("pass only one of --tree, --segment and --user")
    run = load_run(run_dir)
    if tree:
        data = segment_tree(run.segments)
        text = _tree_text(data, run)
    elif segment_ref is not None:
        data = segment_detail(run, segment_ref, sample)
        text = _segment_text(data)
    elif user_id is not None:
        data = user_detail(run, user_id)
        text = _user_text(data)
    else:
        data = segment_overview(run)
        text = _overview_text(data, run.summary)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else text)


def _overview_text(rows, summary) -> str:
    counts = summary.counts
    parents = {r["parent_id"] for r in rows if r["parent_id"] >= 0}
    alone = sum(1 for r in rows if r["parent_id"] < 0)
    under = (f" in {len(parents)} group{'s' if len(parents) != 1 else ''}" + (f", {alone} on their own" if alone else "")
             + " (--tree shows them)") if parents else ""
    lines = [f"{len(rows)} segments of {counts.users or sum(r['size'] for r in rows)} users{under}"]
    if summary.edits is not None:
        stale = summary.edits.not_applying
        lines.append(f"{summary.edits.applied} hand edit{'s' if summary.edits.applied != 1 else ''} (edits.jsonl)"
                     + (f"; no longer applying: {'; '.join(e['edit'] for e in stale)}" if stale else ""))
    for r in rows:
        lines.append(f"{r['segment_id']:>3}  {r['name']}  ({r['size']} users, {r['share']:.0%}){_badge(r, summary)}{_person(r)}")
        if r["parent_id"] >= 0:
            lines.append(f"     parent: {r['parent_id']} {r['parent_name']}")
        if r.get("iab_path"):
            lines.append(f"     iab:   {r['iab_id']} | {r['iab_path']}")
        lines.append(f"     tags:  {', '.join(r['top_tags'][:6]) or '-'}")
        if r["top_items"]:
            lines.append(f"     items: {'; '.join(_short(i) for i in r['top_items'][:3])}")
    return "\n".join(lines)


def _tree_text(nodes, run) -> str:
    """Top-level segments at the margin, the segments beneath each drawn with box lines."""
    from tagger.run.load import groups_phrase, leaf_segments

    leaves = len(leaf_segments(run.segments))
    users = run.summary.counts.users or len(run.users)
    if any(n["children"] for n in nodes):
        lines = [f"{leaves} segments of {users} users{groups_phrase(nodes)}"]
    else:
        lines = [f"{leaves} segments of {users} users (no parent segments)"]
    for node in nodes:
        lines += _node_lines(node, "", "")
    outside = int((run.users["segment_id"] < 0).sum())
    if outside:
        lines.append(f"  -  in no segment  ({outside} user{'' if outside == 1 else 's'})")
    return "\n".join(lines)


def _node_lines(node, lead: str, rest: str) -> list[str]:
    """`lead` starts the node's own line and `rest` the lines of its children (the box-drawing prefix)."""
    iab = f"  iab: {node['iab_path']}" if node["iab_path"] else ""
    lines = [f"{lead}{node['segment_id']:>3}  {node['name']}  ({node['size']} users, {node['share']:.0%}){iab}"
             f"{_badge(node)}{_person(node)}"]
    for k, child in enumerate(node["children"]):
        last = k == len(node["children"]) - 1
        branch, below = ("     └─", "       ") if last else ("     ├─", "     │ ")
        lines += _node_lines(child, rest + branch, rest + below)
    return lines


def _badge(row, summary=None) -> str:
    from tagger.run.load import sensitive_badge

    excluded = summary is not None and summary.config.get("sensitive") == "exclude"
    badge = sensitive_badge(row.get("sensitive", ""), excluded)
    return f"  {badge}" if badge else ""
def _person(row) -> str:
    """'  [set by a person: name, members]' for what `tagger edit` set, else ''."""
    fields = row.get("set_by_person") or []
    return f"  [set by a person: {', '.join(fields)}]" if fields else ""


def _short(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _tags_text(tags, indent="  ") -> list[str]:
    return [f"{indent}- {t['tag']}: \"{t['evidence']}\"" for t in tags] or [f"{indent}(no tags)"]


def _segment_text(d) -> str:
    assigned = ", ".join(f"{n} {k}" for k, n in d["assigned_by"].items())
    lines = [
        f"segment {d['segment_id']}: {d['name']}  ({d['size']} users, {d['share']:.0%}, named by {d['named_by']})"
        f"{_badge(d)}{_person(d)}",
        *([d["description"]] if d["description"] else []),
        *([f"parent:    {d['parent_id']} {d['parent_name']}"] if d["parent_id"] >= 0 else []),
        *([f"children:  {'; '.join(_child(c) for c in d['children'])}"] if d["children"] else []),
        *([f"taxonomy:  {d['iab_id']} | {d['iab_path']}"] if d.get("iab_path") else []),
        f"top tags:  {', '.join(d['top_tags']) or '-'}",
    ]
    if d["top_items"]:
        lines.append(f"top items: {'; '.join(d['top_items'])}")
    lines.append(f"membership: mean strength {d['mean_strength']:.2f}; assigned by {assigned}")
    lines.append(f"strongest {len(d['members'])} members:")
    for m in d["members"]:
        shared = ", ".join(m["shared_with_segment"]) or "none of the segment's top tags"
        where = f" in {m['segment_id']} {m['segment_name']}" if m["segment_id"] != d["segment_id"] else ""
        lines.append(f"  {m['user_id']}{where}  strength {m['strength']:.2f} ({m['assigned_by']}); shares: {shared}")
        lines += _tags_text(m["tags"], "    ")
    return "\n".join(lines)


def _child(c) -> str:
    return f"{c['segment_id']} {c['name']} ({c['size']})"


def _user_text(d) -> str:
    parent = f" (in {d['parent_id']} {d['parent_name']})" if d["parent_id"] >= 0 else ""
    lines = [f"user {d['user_id']}: segment {d['segment_id']} {d['segment_name'] or '(none)'}{parent}",
             f"strength {d['strength']:.2f} ({d['assigned_by']}); status {d['status']}"
             + (f" ({d['error']})" if d["error"] else "") + (f"; {d['reason']}" if d.get("reason") else ""),
             f"shares with the segment: {', '.join(d['shared_with_segment']) or '-'}",
             "tags:"]
    return "\n".join(lines + _tags_text(d["tags"]))
