"""`tagger show RUN_DIR [--segment ID|NAME | --user ID] [--json]`"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("show")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--segment", "segment_ref", metavar="ID|NAME", help="one segment: description, sample members, why they belong")
@click.option("--user", "user_id", metavar="ID", help="one user: tags with evidence, segment, strength")
@click.option("--sample", type=int, default=5, show_default=True, help="members shown with --segment")
@click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
def command(run_dir, segment_ref, user_id, sample, as_json) -> None:
    """Print the segments of a run folder, or one segment or user in detail."""
    from tagger.errors import ConfigError
    from tagger.run.load import load_run, segment_detail, segment_overview, user_detail

    if segment_ref is not None and user_id is not None:
        raise ConfigError("pass either --segment or --user, not both")
    run = load_run(run_dir)
    if segment_ref is not None:
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
    counts = summary.get("counts", {})
    lines = [f"{len(rows)} segments of {counts.get('users', sum(r['size'] for r in rows))} users"]
    for r in rows:
        lines.append(f"{r['segment_id']:>3}  {r['name']}  ({r['size']} users, {r['share']:.0%})")
        if r.get("iab_path"):
            lines.append(f"     iab:   {r['iab_id']} | {r['iab_path']}")
        lines.append(f"     tags:  {', '.join(r['top_tags'][:6]) or '-'}")
        if r["top_items"]:
            lines.append(f"     items: {'; '.join(_short(i) for i in r['top_items'][:3])}")
    return "\n".join(lines)


def _short(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _tags_text(tags, indent="  ") -> list[str]:
    return [f"{indent}- {t['tag']}: \"{t['evidence']}\"" for t in tags] or [f"{indent}(no tags)"]


def _segment_text(d) -> str:
    assigned = ", ".join(f"{n} {k}" for k, n in d["assigned_by"].items())
    lines = [
        f"segment {d['segment_id']}: {d['name']}  ({d['size']} users, {d['share']:.0%}, named by {d['named_by']})",
        d["description"],
        *([f"taxonomy:  {d['iab_id']} | {d['iab_path']}"] if d.get("iab_path") else []),
        f"top tags:  {', '.join(d['top_tags']) or '-'}",
    ]
    if d["top_items"]:
        lines.append(f"top items: {'; '.join(d['top_items'])}")
    lines.append(f"membership: mean strength {d['mean_strength']:.2f}; assigned by {assigned}")
    lines.append(f"strongest {len(d['members'])} members:")
    for m in d["members"]:
        shared = ", ".join(m["shared_with_segment"]) or "none of the segment's top tags"
        lines.append(f"  {m['user_id']}  strength {m['strength']:.2f} ({m['assigned_by']}); shares: {shared}")
        lines += _tags_text(m["tags"], "    ")
    return "\n".join(lines)


def _user_text(d) -> str:
    lines = [f"user {d['user_id']}: segment {d['segment_id']} {d['segment_name'] or '(none)'}",
             f"strength {d['strength']:.2f} ({d['assigned_by']}); status {d['status']}"
             + (f" ({d['error']})" if d["error"] else "") + (f"; {d['reason']}" if d.get("reason") else ""),
             f"shares with the segment: {', '.join(d['shared_with_segment']) or '-'}",
             "tags:"]
    return "\n".join(lines + _tags_text(d["tags"]))
