"""`tagger show --tree/--segment/--user` and report.html on runs with a segment tree.

The run folders are written here by hand, in the shapes the segment tree's contract gives
(segments with `level` and `parent_id`, users with `parent_id` and `parent_name`), so these
views are tested apart from the clustering that will produce them.
"""

from __future__ import annotations

import io
import json
import re
from html import escape

import pandas as pd
import pytest

from tagger.cli import main
from tagger.run.load import load_run
from tagger.run.report_html import render_report
from tests.test_report import CHROMIUM, dump_dom

# (id, name, users, top tags, IAB path): five leaves of unequal size, largest not first by id.
LEAVES = [
    (0, "Guitar players", 5, ["guitar", "guitar strings"], "Hobbies & Interests > Musical Instruments"),
    (1, "Dog owners", 4, ["dog", "dog treats"], ""),
    (2, "Home bakers", 3, ["baking", "bread"], ""),
    (3, "Cat owners", 2, ["cat", "cat litter"], ""),
    (4, "Drummers", 2, ["drums", "drum sticks"], ""),
]
# (id, name, children): the parent named with markup must show as text.
PARENTS = [(5, "Musicians", [0, 4]), (6, "Pets & <i>friends</i>", [1, 3]), (7, "Cooks", [2])]
GRANDPARENTS = [(8, "Hobbyists", [5, 7]), (9, "Animal people", [6])]
PLACED = sum(size for _, _, size, _, _ in LEAVES)
LURKER = "lurker"  # a user in no segment


def write_run(path, levels: int = 2, old_columns: bool = False):
    """A run folder: 16 users in five leaves plus one in none; `levels` 1 is flat, 2 adds the
    parents, 3 the grandparents; `old_columns` drops the tree columns as runs before the tree had."""
    path.mkdir(parents=True)
    nodes = [*PARENTS, *GRANDPARENTS][: {1: 0, 2: 3, 3: 5}[levels]]
    parent = {child: pid for pid, _, children in nodes for child in children}
    size = {sid: n for sid, _, n, _, _ in LEAVES}
    for pid, _, children in nodes:
        size[pid] = sum(size[c] for c in children)
    names = {sid: name for sid, name, *_ in [*LEAVES, *nodes]}
    tags = {sid: top for sid, _, _, top, _ in LEAVES}
    segments = [_segment(sid, names[sid], size[sid], tags[sid], iab, 0, parent.get(sid, -1))
                for sid, _, _, _, iab in LEAVES]
    segments += [_segment(pid, name, size[pid], [], "", 1 if pid < 8 else 2, parent.get(pid, -1))
                 for pid, name, _ in nodes]
    users = [_user(f"u{sid}-{i}", sid, tags[sid], 0.95 - 0.1 * i, parent.get(sid, -1), names)
             for sid, *_ in LEAVES for i in range(size[sid])]
    users.append(_user(LURKER, -1, [], 0.0, -1, names))
    users_frame, segments_frame = pd.DataFrame(users), pd.DataFrame(segments)
    if old_columns:
        users_frame = users_frame.drop(columns=["parent_id", "parent_name"])
        segments_frame = segments_frame.drop(columns=["level", "parent_id"])
    users_frame.to_parquet(path / "users.parquet")
    segments_frame.to_parquet(path / "segments.parquet")
    tagged = [{"user_id": u["user_id"], "status": "tagged",
               "tags": [{"tag": t, "evidence": f"I love my {t}"} for t in u["tags"]]} for u in users]
    (path / "tags.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tagged), encoding="utf-8")
    counts = {"users": len(users), "tagged": len(users), "failed": 0, "segments": len(LEAVES),
              "unsegmented": 1, "noise_assigned_to_nearest": 0}
    (path / "run.json").write_text(json.dumps({"counts": counts, "model": "fake", "embedder": "hash",
                                               "wall_time_s": 1}), encoding="utf-8")
    return path


def _segment(sid, name, size, top_tags, iab_path, level, parent_id) -> dict:
    return {"segment_id": sid, "name": name, "description": f"People who talk about {name}.", "size": size,
            "top_tags": top_tags, "top_items": [f"{t} item" for t in top_tags],
            "evidence": [f"I love my {t}" for t in top_tags],
            "named_by": "llm", "iab_id": "123" if iab_path else "", "iab_path": iab_path, "share": size / PLACED,
            "level": level, "parent_id": parent_id}


def _user(user_id, sid, tags, strength, parent_id, names) -> dict:
    return {"user_id": user_id, "segment_id": sid, "segment_name": names.get(sid, ""), "parent_id": parent_id,
            "parent_name": names.get(parent_id, ""), "strength": round(strength, 2),
            "assigned_by": "cluster" if sid >= 0 else "none", "status": "tagged", "tags": tags, "error": "",
            "reason": "", "x": float(sid % 3) + 0.1 * strength, "y": float(sid // 3) - 0.1 * strength}


@pytest.fixture
def tree_run(tmp_path):
    return write_run(tmp_path / "tree")


def show(capsys, *args):
    capsys.readouterr()
    code = main(["show", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _line(sid: int) -> str:
    """The text `show` prints for a segment: id, name, size and share."""
    name, size = _name(sid), _size(sid)
    return f"{sid:>3}  {name}  ({size} users, {size / PLACED:.0%})"


def _name(sid: int) -> str:
    return {sid: name for sid, name, *_ in [*LEAVES, *PARENTS, *GRANDPARENTS]}[sid]


def _size(sid: int) -> int:
    leaves = {sid: n for sid, _, n, _, _ in LEAVES}
    if sid in leaves:
        return leaves[sid]
    return sum(_size(c) for pid, _, children in [*PARENTS, *GRANDPARENTS] if pid == sid for c in children)


# --- tagger show ---------------------------------------------------------------------------------

def test_tree_prints_parents_with_their_children_beneath_largest_first(capsys, tree_run):
    code, out, err = show(capsys, tree_run, "--tree")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "5 segments of 17 users in 3 groups"
    # Parents at the margin, largest first; each child on the lines right after its parent.
    assert lines[1] == _line(5)
    assert lines[2] == f"     ├─{_line(0)}  iab: Hobbies & Interests > Musical Instruments"
    assert lines[3] == f"     └─{_line(4)}"
    assert lines[4:7] == [_line(6), f"     ├─{_line(1)}", f"     └─{_line(3)}"]
    assert lines[7:9] == [_line(7), f"     └─{_line(2)}"]
    assert lines[9] == "  -  in no segment  (1 user)" and len(lines) == 10


def test_tree_json_is_nested(capsys, tree_run):
    code, out, _ = show(capsys, tree_run, "--tree", "--json")
    tree = json.loads(out)
    assert code == 0
    assert [(n["segment_id"], n["level"], n["size"]) for n in tree] == [(5, 1, 7), (6, 1, 6), (7, 1, 3)]
    assert [[c["segment_id"] for c in n["children"]] for n in tree] == [[0, 4], [1, 3], [2]]
    first = tree[0]["children"][0]
    assert {"segment_id", "name", "size", "share", "level", "children"} <= set(first)
    assert first["name"] == "Guitar players" and first["level"] == 0 and first["children"] == []
    assert sum(n["share"] for n in tree) == pytest.approx(1.0)


def test_tree_of_three_levels_nests_twice(capsys, tmp_path):
    run = write_run(tmp_path / "deep", levels=3)
    code, out, _ = show(capsys, run, "--tree")
    assert code == 0
    assert out.splitlines()[1:8] == [
        _line(8),
        f"     ├─{_line(5)}",
        f"     │      ├─{_line(0)}  iab: Hobbies & Interests > Musical Instruments",
        f"     │      └─{_line(4)}",
        f"     └─{_line(7)}",
        f"            └─{_line(2)}",
        _line(9),
    ]
    _, out, _ = show(capsys, run, "--tree", "--json")
    assert [c["segment_id"] for c in json.loads(out)[0]["children"][0]["children"]] == [0, 4]


@pytest.mark.parametrize("old_columns", [False, True], ids=["level-0-only", "no-tree-columns"])
def test_tree_of_a_flat_run_is_one_list_of_leaves(capsys, tmp_path, old_columns):
    run = write_run(tmp_path / "flat", levels=1, old_columns=old_columns)
    code, out, _ = show(capsys, run, "--tree")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "5 segments of 17 users (no parent segments)"
    assert lines[1:6] == [f"{_line(0)}  iab: Hobbies & Interests > Musical Instruments",
                          _line(1), _line(2), _line(3), _line(4)]
    _, out, _ = show(capsys, run, "--tree", "--json")
    assert [(n["segment_id"], n["level"], n["children"]) for n in json.loads(out)] == [
        (0, 0, []), (1, 0, []), (2, 0, []), (3, 0, []), (4, 0, [])]


def test_overview_lists_only_leaves_each_with_its_parent(capsys, tree_run):
    code, out, _ = show(capsys, tree_run)
    assert code == 0 and out.startswith("5 segments of 17 users in 3 groups (--tree shows them)\n")
    for sid, *_ in LEAVES:
        assert _line(sid) in out
    for pid, name, _ in PARENTS:
        assert _line(pid) not in out
    assert f"{_line(0)}\n     parent: 5 Musicians\n" in out
    _, out, _ = show(capsys, tree_run, "--json")
    rows = json.loads(out)
    assert [(r["segment_id"], r["level"], r["parent_id"]) for r in rows] == [(0, 0, 5), (1, 0, 6), (2, 0, 7),
                                                                              (3, 0, 6), (4, 0, 5)]
    assert rows[1]["parent_name"] == "Pets & <i>friends</i>"


def test_segment_of_a_parent_has_the_members_of_its_leaves(capsys, tree_run):
    code, out, _ = show(capsys, tree_run, "--segment", "6", "--sample", "100", "--json")
    detail = json.loads(out)
    assert code == 0 and detail["level"] == 1 and detail["parent_id"] == -1 and detail["size"] == 6
    assert [c["segment_id"] for c in detail["children"]] == [1, 3]
    assert sorted(m["user_id"] for m in detail["members"]) == sorted(
        [f"u1-{i}" for i in range(4)] + [f"u3-{i}" for i in range(2)])
    assert all(m["parent_id"] == 6 for m in detail["members"])
    code, text, _ = show(capsys, tree_run, "--segment", "musicians")
    assert code == 0 and text.startswith("segment 5: Musicians  (7 users, 44%")
    assert "children:  0 Guitar players (5); 4 Drummers (2)" in text
    assert "  u0-0 in 0 Guitar players  strength 0.95" in text


def test_segment_of_a_leaf_names_its_parent(capsys, tree_run):
    code, text, _ = show(capsys, tree_run, "--segment", "Drummers")
    assert code == 0 and "\nparent:    5 Musicians\n" in text and "children:" not in text
    _, out, _ = show(capsys, tree_run, "--segment", "4", "--json")
    detail = json.loads(out)
    assert (detail["parent_id"], detail["parent_name"], detail["children"]) == (5, "Musicians", [])
    assert [m["user_id"] for m in detail["members"]] == ["u4-0", "u4-1"]


def test_user_shows_its_parent(capsys, tree_run):
    code, text, _ = show(capsys, tree_run, "--user", "u3-1")
    assert code == 0 and text.startswith("user u3-1: segment 3 Cat owners (in 6 Pets & <i>friends</i>)\n")
    _, out, _ = show(capsys, tree_run, "--user", "u3-1", "--json")
    assert json.loads(out)["parent_id"] == 6
    _, out, _ = show(capsys, tree_run, "--user", LURKER, "--json")
    assert (json.loads(out)["parent_id"], json.loads(out)["parent_name"]) == (-1, "")
    _, text, _ = show(capsys, tree_run, "--user", LURKER)
    assert "(in " not in text.splitlines()[0]


def test_tree_with_segment_or_user_is_one_line_error(capsys, tree_run):
    for extra in (["--segment", "0"], ["--user", "u0-0"]):
        code, out, err = show(capsys, tree_run, "--tree", *extra)
        assert code == 2 and out == "" and err.startswith("error: pass only one of --tree, --segment and --user")
        assert len(err.strip().splitlines()) == 1


# --- report.html ---------------------------------------------------------------------------------

def test_report_of_a_tree_run_draws_the_tree_and_names_each_leaf_parent(tree_run):
    text = render_report(load_run(tree_run))
    assert "<title>tagger: 5 segments of 17 users in 3 groups</title>" in text
    tree = text[text.index('<ul class="tree"'):text.index("</ul></div>", text.index('<ul class="tree"'))]
    # Only leaves get a card, and each card says which parent it is in.
    assert text.count('<section class="card"') == len(LEAVES)
    assert 'in <a href="#node-6">Pets &amp; &lt;i&gt;friends&lt;/i&gt;</a>' in text
    assert "<i>friends</i>" not in text
    assert all(f'data-seg="{sid}"' in tree for sid in range(8))
    assert 'aria-label="segment sizes"' not in text


@pytest.mark.parametrize("old_columns", [False, True], ids=["level-0-only", "no-tree-columns"])
def test_report_of_a_flat_run_has_no_tree(tmp_path, old_columns):
    text = render_report(load_run(write_run(tmp_path / "flat", levels=1, old_columns=old_columns)))
    assert 'class="tree"' not in text and 'aria-label="segment sizes"' in text
    assert "<title>tagger: 5 segments of 17 users</title>" in text
    assert text.count('<section class="card"') == len(LEAVES) and " · in " not in text


# A probe run after the report's own script: per tree row, its name, depth and on-screen position;
# then a click on the "Pets" parent row, and which map dots stay lit.
PROBE = """<script>
var rows = document.querySelectorAll('.tree .node-row'), out = [];
for (var i = 0; i < rows.length; i++){
  var r = rows[i].getBoundingClientRect(), label = rows[i].querySelector('.node-name').getBoundingClientRect();
  out.push({seg: rows[i].getAttribute('data-seg'), text: rows[i].querySelector('.node-name').textContent,
            depth: rows[i].getAttribute('data-depth'), top: r.top, left: label.left, visible: r.height > 0});
}
document.querySelector('.node-row[data-seg="6"]').click();
var lit = document.querySelectorAll('.dot:not(.dim)');
var ids = []; for (var j = 0; j < lit.length; j++) ids.push(lit[j].getAttribute('data-s'));
document.body.setAttribute('data-probe', JSON.stringify({rows: out, lit: ids}));
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (apt-get install -y chromium)")
def test_tree_renders_in_chromium_with_children_indented_under_their_parent(tree_run, tmp_path):
    assert main(["report", str(tree_run)]) == 0
    page = tmp_path / "probe.html"
    page.write_text((tree_run / "report.html").read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                    encoding="utf-8")
    dom = dump_dom(page, tmp_path)
    assert 'data-rendered="17 users"' in dom
    probe = json.loads(re.search(r'data-probe="([^"]*)"', dom).group(1).replace("&quot;", '"')
                       .replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    rows = probe["rows"]
    assert [(r["seg"], r["text"]) for r in rows] == [
        ("5", "Musicians"), ("0", "Guitar players"), ("4", "Drummers"),
        ("6", "Pets & <i>friends</i>"), ("1", "Dog owners"), ("3", "Cat owners"),
        ("7", "Cooks"), ("2", "Home bakers")]
    assert all(r["visible"] for r in rows)
    tops = [r["top"] for r in rows]
    assert tops == sorted(tops) and len(set(tops)) == len(tops), "one row each, top to bottom"
    parents = [r for r in rows if r["depth"] == "0"]
    children = [r for r in rows if r["depth"] == "1"]
    assert len(parents) == 3 and len(children) == 5
    assert min(c["left"] for c in children) > max(p["left"] for p in parents), "children indented"
    # Clicking the "Pets" row lights the dots of its two leaves only.
    assert rows[3]["seg"] == "6" and sorted(set(probe["lit"])) == ["1", "3"] and len(probe["lit"]) == 6
    assert escape("Pets & <i>friends</i>") in dom and "<i>friends</i>" not in dom


# --- the summary `tagger segment` prints, and trees read from damaged tables ---------------------

def _printed(segments) -> str:
    from types import SimpleNamespace

    from rich.console import Console

    from tagger.run.report_text import print_segments
    from tagger.summary import Counts, RunSummary

    counts = Counts(users=17, tagged=17, failed=0, noise_assigned_to_nearest=0, unsegmented=1, rows=17, comments_kept=17)
    summary = RunSummary(tagger_version="test", config={}, model="fake", embedder="hash", counts=counts, wall_time_s=1)
    console = Console(file=io.StringIO(), width=200)
    print_segments(SimpleNamespace(summary=summary, segments=segments, out=None), console)
    return console.file.getvalue()


def test_segment_summary_lists_leaves_group_by_group(tree_run):
    text = _printed(load_run(tree_run).segments)
    assert "5 segments of 17 users in 3 groups" in text and " group " in text
    order = [text.index(name) for name in ("Guitar players", "Drummers", "Dog owners", "Cat owners", "Home bakers")]
    assert order == sorted(order)
    assert re.search(r"Drummers\s+│\s+Musicians\s+│\s+2\s", text)
    assert "Cooks" in text and re.search(r"│\s+Cooks\s+│\s+3\s", text)


def test_segment_summary_of_a_flat_run_has_no_group_column(tmp_path):
    text = _printed(load_run(write_run(tmp_path / "flat", levels=1, old_columns=True)).segments)
    assert "5 segments of 17 users" in text and " in 3 groups" not in text and " group " not in text


def test_a_missing_or_looping_parent_reads_as_top_level():
    from tagger.run.load import segment_tree

    segments = pd.DataFrame([
        {"segment_id": 0, "name": "a", "size": 3, "share": 0.5, "level": 0, "parent_id": 9},   # no segment 9
        {"segment_id": 1, "name": "b", "size": 3, "share": 0.5, "level": 0, "parent_id": 2},
        {"segment_id": 2, "name": "p", "size": 3, "share": 0.5, "level": 1, "parent_id": 1},   # points down
    ])
    tree = segment_tree(segments)
    assert [(n["segment_id"], [c["segment_id"] for c in n["children"]]) for n in tree] == [(0, []), (2, [1])]
