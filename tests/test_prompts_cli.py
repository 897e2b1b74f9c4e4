from __future__ import annotations

import json

import pandas as pd
import pytest

from tagger.cli import main
from tagger.config import make_config
from tagger.llm.fake import FakeEngine
from tagger.paths import prompts_dir
from tagger.run.segment import segment

FAST = ["--engine", "fake", "--embedder", "hash"]


def cli(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def override(folder, name, text):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.toml").write_text(text)
    return folder


def test_list_shows_builtins_and_overrides_from_option_or_env(capsys, tmp_path, monkeypatch):
    code, out, _ = cli(capsys, "prompts", "list")
    assert code == 0
    for name in ("tag", "tag-free", "name"):
        assert f"{prompts_dir() / name}.toml" in out
    folder = override(tmp_path / "p", "name", (prompts_dir() / "name.toml").read_text())
    override(folder, "extra", 'system = "S"\nuser = "U"\n')
    code, out, _ = cli(capsys, "prompts", "list", "--prompts", folder)
    assert "override of built-in" in out and str(folder / "name.toml") in out and "not used by tagger" in out
    monkeypatch.setenv("TAGGER_PROMPTS", str(folder))
    assert cli(capsys, "prompts", "list")[1] == out


def test_show_prints_the_winning_file(capsys, tmp_path):
    code, out, _ = cli(capsys, "prompts", "show", "tag")
    assert code == 0 and (prompts_dir() / "tag.toml").read_text().strip() in out
    code, _, err = cli(capsys, "prompts", "show", "nope")
    assert code == 2 and err.startswith("error: no prompt template named 'nope'")


def test_render_is_exactly_what_the_pipeline_sends(capsys, comments_csv, tmp_path):
    """Run the pipeline with a recording engine, then render one user: the messages must match."""
    engine = FakeEngine()
    config = make_config(engine="fake", embedder="hash", time_col="ts", doc_tokens=16)  # the budget cuts comments
    segment(comments_csv, config, engine=engine)
    sent = engine.calls[0]  # users in id order; all of them have candidates here
    users = sorted(pd.read_csv(comments_csv)["user_id"].unique())
    for user in ("dog-2", "baking-0"):
        code, out, _ = cli(capsys, "prompts", "render", "tag", "--data", comments_csv, "--user", user,
                           "--engine", "fake", "--time-col", "ts", "--doc-tokens", 16, "--json")
        assert code == 0
        request = json.loads(out)
        assert request["messages"] == sent[users.index(user)]
        enum = request["schema"]["properties"]["tags"]["items"]["enum"]
        assert f"Candidates: {', '.join(enum)}" in request["messages"][-1]["content"]
    code, text, _ = cli(capsys, "prompts", "render", "tag", "--data", comments_csv, "--user", "dog-2", "--engine", "fake")
    assert code == 0 and text.startswith("--- system ---") and "--- JSON schema" in text


def test_render_for_a_rerun_with_candidates_from_is_what_that_run_sent(capsys, tmp_path):
    # June: "banjo" is shared with one other user; in July that user is gone, so a fresh fit
    # would rank it as this user's alone. The rendered request must be the one July sent.
    rows = [("me", "The guitar and the banjo here. My strings, the chord. A pick."), ("b", "My banjo slipped.")]
    rows += [(f"g{i}", "guitar strings and a chord chart, a pick") for i in range(4)]
    rows += [(f"d{i}", "dog leash and dog treats") for i in range(4)]
    june_csv, july_csv = tmp_path / "june.csv", tmp_path / "july.csv"
    pd.DataFrame(rows, columns=["user_id", "text"]).to_csv(june_csv, index=False)
    pd.DataFrame([r for r in rows if r[0] != "b"], columns=["user_id", "text"]).to_csv(july_csv, index=False)
    june = tmp_path / "june"
    segment(june_csv, make_config(engine="fake", embedder="hash"), out=june, engine=FakeEngine(), report=False)
    engine = FakeEngine()
    segment(july_csv, make_config(engine="fake", embedder="hash", candidates_from=june, cache=False),
            out=tmp_path / "july", engine=engine, report=False)
    sent = engine.calls[0][sorted(u for u, _ in rows if u != "b").index("me")]
    code, out, err = cli(capsys, "prompts", "render", "tag", "--run", tmp_path / "july", "--data", july_csv,
                         "--user", "me", "--json")
    assert code == 0, err
    assert json.loads(out)["messages"] == sent
    code, out, _ = cli(capsys, "prompts", "render", "tag", "--data", july_csv, "--user", "me", "--engine", "fake", "--json")
    assert json.loads(out)["messages"] != sent  # fitted afresh on July alone, the list differs


def test_render_name_shows_the_very_request_naming_sends_for_the_segment_asked(capsys, comments_csv, tmp_path):
    engine, run = FakeEngine(), tmp_path / "run"
    segment(comments_csv, make_config(engine="fake", embedder="hash"), engine=engine, out=run, report=False)
    sent = [json.dumps(chat) for call in engine.calls for chat in call if chat[0]["content"].startswith("You name")]
    profiles = {p["segment_id"]: p for p in json.loads((run / "segment_profiles.json").read_text())}
    rendered = {}
    for sid in pd.read_parquet(run / "segments.parquet")["segment_id"]:
        code, out, _ = cli(capsys, "prompts", "render", "name", "--run", run, "--segment", sid, "--json")
        assert code == 0
        request = json.loads(out)
        rendered[sid] = json.dumps(request["messages"])
        if profiles[sid]["level"] == 0:  # a leaf is offered its own best-ranked name
            assert profiles[sid]["options"][0]["label"] in request["schema"]["properties"]["label"]["enum"]
    # one request per segment, each the one naming sent, none shown twice
    assert sorted(rendered.values()) == sorted(sent) and len(set(rendered.values())) == len(rendered)


def test_render_name_errors(capsys, comments_csv, tmp_path):
    code, _, err = cli(capsys, "prompts", "render", "tag", "--data", comments_csv, "--user", "ghost", "--engine", "fake")
    assert code == 2 and err.startswith("error: no user 'ghost'") and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "prompts", "render", "name", "--data", comments_csv, "--user", "dog-1")
    assert code == 2 and "--run" in err


def test_check_passes_builtins_and_lists_each_problem(capsys, tmp_path):
    code, out, _ = cli(capsys, "prompts", "check")
    assert code == 0 and out.startswith("ok: 3 template(s)")
    folder = override(tmp_path / "p", "tag", 'system = "S"\nuser = "{{ comments }} {{ mood }}"\nrequired = ["comments"]\n')
    override(folder, "name", 'system = "S"\nuser = "{% for t in tags %}"\n')
    override(folder, "tag-free", 'system = "S"\nuser = \n')
    code, _, err = cli(capsys, "prompts", "check", "--prompts", folder)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 4 and lines[-1].startswith("error: 3 problem(s)")
    assert lines[0].startswith("name: ") and "Jinja2" in lines[0]
    assert lines[1].startswith("tag: ") and "['mood']" in lines[1]
    assert lines[2].startswith("tag-free: ") and "not valid TOML" in lines[2]


def test_editing_a_template_and_rerunning_changes_the_result(capsys, comments_csv, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert cli(capsys, "segment", comments_csv, "--out", first, "--no-report", *FAST)[0] == 0
    text = (prompts_dir() / "name.toml").read_text().replace(
        'user = """What sets this group apart: {{ tags | join(", ") }}',
        'user = """Names, last first: {{ options | reverse | join("; ") }}\nWhat sets this group apart: {{ tags | join(", ") }}')
    folder = override(tmp_path / "p", "name", text)
    assert cli(capsys, "segment", comments_csv, "--out", second, "--prompts", folder, "--no-report", *FAST)[0] == 0
    before = pd.read_parquet(first / "segments.parquet")
    after = pd.read_parquet(second / "segments.parquet")
    # Same segments, other answers: the fake model describes the first line it is shown, now the
    # names (a clear winner is offered alone, so reversing the names need not change the pick).
    assert before["size"].tolist() == after["size"].tolist()
    assert before["description"].tolist() != after["description"].tolist()
    summary = json.loads((second / "run.json").read_text())
    # only the naming requests were new: every tagging answer came from the cache
    assert summary["cache"]["misses"] == len(after) and summary["prompts"]["name"]["path"] == str(folder / "name.toml")


@pytest.mark.parametrize("args", [["prompts", "render", "tag", "--user", "x"], ["prompts", "render", "name"]])
def test_render_without_its_inputs_is_a_usage_error(capsys, args):
    code, _, err = cli(capsys, *args)
    assert code != 0 and "needs" in err
