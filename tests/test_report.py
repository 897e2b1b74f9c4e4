from __future__ import annotations

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from tagger.cli import main
from tagger.run.report_html import _json_for_script, render_report
from tagger.run.load import leaf_segments, load_run
from tagger.summary import Stability

FAST = ["--engine", "fake", "--embedder", "hash"]
# Entities survive cleaning as literal markup: the report must show them as text, never run them.
PWN = "document.body.setAttribute('data-pwned','1')"
HOSTILE_TEXT = f"&lt;img src=x onerror=\"{PWN}\"&gt; guitar guitar strings &lt;script&gt;{PWN}&lt;/script&gt;"
HOSTILE_ITEM = f"&lt;b onmouseover=\"{PWN}\"&gt;guitar item"


@pytest.fixture
def hostile_run(tmp_path, comments_csv):
    frame = pd.read_csv(comments_csv)
    extra = [{"user_id": f"guitar-x{i}", "text": text, "ts": 1, "item": HOSTILE_ITEM}
             for i in range(3) for text in (HOSTILE_TEXT, "my guitar strings stay in tune", "guitar picks for practice")]
    path = tmp_path / "hostile.csv"
    pd.concat([frame, pd.DataFrame(extra)]).to_csv(path, index=False)
    out = tmp_path / "run"
    assert main(["segment", str(path), "--out", str(out), "--item-col", "item", *FAST]) == 0
    return out


def test_segment_writes_a_report_and_no_report_skips_it(hostile_run, comments_csv, tmp_path):
    assert (hostile_run / "report.html").stat().st_size > 1000
    out = tmp_path / "bare"
    assert main(["segment", str(comments_csv), "--out", str(out), "--no-report", *FAST]) == 0
    assert not (out / "report.html").exists()
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()


def test_report_is_offline_and_escapes_user_text(hostile_run):
    run = load_run(hostile_run)
    text = render_report(run)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "no network resources"
    assert "<img src=x" not in text and "<b onmouseover" not in text and f"<script>{PWN}" not in text
    # ...and the hostile text is there, shown escaped (the segment's top items).
    assert "&lt;b onmouseover=" in text
    # One card per leaf segment; parents, when the run has them, are drawn in the tree instead.
    for name in leaf_segments(run.segments)["name"]:
        assert f">{_escape(name)}</h3>" in text
    assert text.count('<section class="card"') == len(leaf_segments(run.segments))
    assert set(run.users.columns) >= {"x", "y"} and run.users[["x", "y"]].abs().sum().sum() > 0


def test_hover_data_cannot_close_its_script_tag():
    data = {"users": [{"user": "</script><script>alert(1)</script>", "segment": "a & b", "tags": ["<x>"]}]}
    text = _json_for_script(data)
    assert not set("<>&") & set(text) and json.loads(text) == data


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


def test_report_of_a_missing_run_is_one_line(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run folder not found") and len(err.strip().splitlines()) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(page, tmp_path) -> str:
    """The DOM after the page's scripts ran, in headless chromium; fails on any console message."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000", "--dump-dom", page.as_uri()],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium_without_console_errors(hostile_run, tmp_path):
    dom = dump_dom(hostile_run / "report.html", tmp_path)
    users = load_run(hostile_run).users
    # The inline script ran to its end, and the hostile comment's script did not run.
    assert f'data-rendered="{len(users)} users"' in dom
    assert "data-pwned" not in re.search(r"<body[^>]*>", dom).group(0)
    assert "&lt;b onmouseover=" in dom
    for name in load_run(hostile_run).segments["name"]:
        assert _escape(name) in dom
    assert dom.count('class="dot') == len(users)


def test_large_runs_map_a_sample_of_users(hostile_run, monkeypatch):
    from tagger.run import report_html

    monkeypatch.setattr(report_html, "MAX_MAP_USERS", 5)
    text = render_report(load_run(hostile_run))
    hover = json.loads(re.search(r'id="tagger-data">(.*?)</script>', text).group(1))
    assert text.count('class="dot"') == len(hover["users"]) == 5
    assert "(5 of 15 users, a random sample)" in text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (apt-get install -y chromium)")
def test_hovering_a_dot_shows_user_segment_and_tags(hostile_run, tmp_path):
    run = load_run(hostile_run)
    # A copy of the report with a probe that hovers the first dot and records the tooltip.
    probe = ("<script>var d=document.querySelector('.dot');d.dispatchEvent(new MouseEvent('mousemove',"
             "{clientX:10,clientY:10,bubbles:true}));document.body.setAttribute('data-tip',"
             "document.getElementById('tip').textContent+'|'+document.getElementById('tip').style.display);</script>")
    page = tmp_path / "probe.html"
    page.write_text((hostile_run / "report.html").read_text().replace("</body>", probe + "</body>"))
    tip = re.search(r'data-tip="([^"]*)"', dump_dom(page, tmp_path)).group(1)
    user = run.users.iloc[0]
    segment = f"{user.segment_name} (in {user.parent_name})" if user.get("parent_name") else user.segment_name
    assert tip == f"{user.user_id}{segment}{', '.join(user.tags)}|block".replace("&", "&amp;")


def test_report_draws_stability_figures(comments_csv, tmp_path):
    out = tmp_path / "run"
    assert main(["segment", str(comments_csv), "--out", str(out), "--stability", "3", *FAST]) == 0
    run = load_run(out)
    stability = run.summary.stability.model_dump()
    text = (out / "report.html").read_text(encoding="utf-8")
    section = text[text.index("<section id=\"stability\">"):]
    section = section[: section.index("</section>")]
    assert f">{stability['mean_ari']:.2f}</b>" in section and f">{stability['min_ari']:.2f}</b>" in section
    drawn = re.findall(r'<g class="jaccard (stable|unstable)" data-seg="(\d+)"', section)
    assert sorted(int(s) for _, s in drawn) == sorted(r["segment_id"] for r in stability["segments"])


def test_report_lists_unstable_segments(comments_csv, tmp_path):
    out = tmp_path / "run"
    assert main(["segment", str(comments_csv), "--out", str(out), "--no-report", *FAST]) == 0
    run = load_run(out)
    rows = [{"segment_id": int(s), "segment_name": f"name {s}", "size": 4, "mean_jaccard": 0.3 if s == 0 else 0.9,
             "min_jaccard": 0.2 if s == 0 else 0.8, "stable": s != 0} for s in run.segments["segment_id"]]
    run.summary.stability = Stability(runs=5, seeds=[0, 1, 2, 3, 4], sample_fraction=0.9, segments_per_run=[3] * 5,
                                      mean_ari=0.71, min_ari=0.52, pairwise_ari=[0.71], unstable_below_jaccard=0.6,
                                      segments=rows, unstable=[0])
    text = render_report(run)
    assert '<span class="unstable">name 0</span>' in text
    assert '<g class="jaccard unstable" data-seg="0">' in text and ">0.71</b>" in text and ">0.52</b>" in text
    assert text.count('class="jaccard stable"') == len(rows) - 1


def test_report_without_stability_has_no_stability_section(hostile_run):
    assert 'id="stability"' not in render_report(load_run(hostile_run))
