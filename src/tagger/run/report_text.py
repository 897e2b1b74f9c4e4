"""The terminal summary printed at the end of `tagger segment`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tagger.run.load import groups_phrase, parent_of, segment_tree, tree_columns, walk_tree
from tagger.summary import RunSummary


def print_segments(result, console: Console | None = None) -> None:
    console = console or Console()
    counts = result.summary.counts.model_dump()
    rows, groups = _leaf_rows(result.segments)
    title = f"{len(rows)} segments of {counts['users']} users{groups_phrase(segment_tree(tree_columns(result.segments)))}"
    table = Table(title=title)
    for column, justify in (("id", "right"), ("segment", "left"), *([("group", "left")] if groups else []),
                            ("users", "right"), ("share", "right"), ("IAB", "left"), ("top tags", "left")):
        table.add_column(column, justify=justify)
    for row, parent in rows:
        # the node's last two tiers: "Computing > Laptops" says enough beside the name
        iab = " > ".join(str(row.iab_path).split(" > ")[-2:]) if row.iab_path else "-"
        table.add_row(str(row.segment_id), row.name, *([parent or "-"] if groups else []), str(row.size),
                      f"{row.share:.0%}", iab, ", ".join(row.top_tags[:4]))
    console.print(table)
    note = result.summary.tree.note
    if note:  # fewer segments or parents than asked for, and why
        console.print(f"note: {note}", markup=False)
    console.print(
        f"tagged {counts['tagged']}/{counts['users']} users ({counts['failed']} failed), "
        f"{counts['noise_assigned_to_nearest']} noise users joined their nearest segment, "
        f"{counts['unsegmented']} unsegmented{_no_content(counts)}; wall time {result.summary.wall_time_s:.0f} s"
    )
    console.print(rows_line(counts))
    for line in budget_lines(result.summary):
        console.print(line, markup=False)
    if result.out is not None:
        console.print(f"wrote {result.out}/ (users, segments, tags.jsonl, run.json)")


ROW_LABELS = {"missing_user_id_rows": "without user id", "empty_text_rows": "with empty text",
              "quoted_only_rows": "only quoting others (--keep-quotes keeps them)",
              "duplicate_comments": "duplicate comments", "beyond_max_users_rows": "of users beyond --max-users",
              "beyond_max_comments_rows": "beyond --max-comments-per-user"}
TEXT_LABELS = {"quoted_pieces_dropped": "quoted lines or attributions dropped",
               "signatures_dropped": "repeated signatures counted once",
               "comments_cut_at_max_chars": "comments cut at 20,000 characters"}


def rows_line(counts: dict) -> str:
    """'read 9 rows, used 6 comments (6 embedded, 4 in prompts); not used: 2 without user id', or
    without the 'not used' part when every row was used (segment and assign print it)."""
    dropped = ", ".join(f"{counts[key]} {label}" for key, label in ROW_LABELS.items() if counts.get(key))
    line = f"read {counts['rows']} rows, used {counts['comments_kept']} comments"
    if "comments_in_prompt" in counts:
        line += (f" ({counts.get('comments_embedded', 0)} embedded, {counts['comments_in_prompt']} with an "
                 f"excerpt in the tagging prompt)")
    if dropped:
        line += f"; not used: {dropped}"
    cleaned = ", ".join(f"{counts[key]} {label}" for key, label in TEXT_LABELS.items() if counts.get(key))
    return line + (f"; {cleaned}" if cleaned else "")


def _leaf_rows(segments) -> tuple[list, int]:
    """The leaf rows with their parent's name, and how many top-level groups there are (0 when flat).
    With groups, the leaves come group by group in the tree's order, so a group's leaves sit together."""
    frame = tree_columns(segments)
    tree = segment_tree(frame)
    leaves = frame[frame["level"] == 0].set_index("segment_id", drop=False)
    names, parents = dict(zip(frame["segment_id"], frame["name"], strict=True)), parent_of(frame)
    if not any(node["children"] for node in tree):
        return [(row, "") for row in leaves.itertuples()], 0
    order = [n["segment_id"] for n in walk_tree(tree) if n["level"] == 0]
    return [(row, names.get(parents[row.segment_id], "")) for row in leaves.loc[order].itertuples()], len(tree)


def _no_content(counts: dict) -> str:
    n = counts.get("unsegmented_no_content", 0)
    return f" ({n} with no tags and no usable text)" if n else ""


def budget_lines(summary: RunSummary) -> list[str]:
    """How many users the LLM read, and how far the distilled placer agrees with the full vectors,
    with a warning line when it agrees with them on fewer than `warn_below` of the read users."""
    counts, llm, agreement = summary.counts, summary.llm, summary.agreement
    lines = []
    if counts.unread:
        lines.append(f"the LLM read {llm.read if llm else 0:,} of {counts.users:,} users (--llm-users "
                     f"{llm.setting if llm else '?'}); {counts.distilled:,} were placed from their text by the "
                     "distilled placer (assigned_by distilled, with a confidence), and have no tags")
    if agreement:
        weakest = min(agreement.per_segment, key=lambda s: (s.agreement, s.segment_id), default=None)
        low = f"; lowest {weakest.agreement:.0%} in segment {weakest.segment_id} ({weakest.name})" if weakest else ""
        placed = agreement.placed_estimate
        expected = (f"; {placed:.0%} expected on the users it placed (those it was surest of)"
                    if placed is not None else "")
        lines.append(f"placer agreement {agreement.overall:.0%}: it puts a read user it was not fitted on where "
                     f"the full vectors put them ({agreement.users:,} users, {agreement.folds}-fold){expected}{low}")
        if agreement.low:
            lines.append(f"warning: the placer agrees with the full vectors on only {agreement.overall:.0%} of held-out "
                         f"users (below {agreement.warn_below:.0%}): its placements are rough; raise --llm-users, "
                         "or use `tagger assign --llm`")
    return lines
