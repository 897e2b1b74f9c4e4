from __future__ import annotations

import pytest

from tagger import prompts
from tagger.errors import ConfigError


def test_builtin_templates_render_system_examples_then_user():
    template = prompts.load("tag")
    messages = template.render(comments=["first review", "second review"], candidates=["review"], user_id="u", items=[])
    assert messages[0]["role"] == "system"
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * len(template.examples)
    assert "- first review\n- second review" in messages[-1]["content"]
    assert len(template.sha256) == 64


def test_shared_prefix_is_identical_for_every_user():
    template = prompts.load("tag")
    a = template.render(comments=["a"], candidates=["a"], user_id="1", items=[])
    b = template.render(comments=["b"], candidates=["b"], user_id="2", items=[])
    assert a[:-1] == b[:-1]


def write(folder, name, text):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.toml").write_text(text)
    return folder


def test_override_folder_wins(tmp_path):
    folder = write(tmp_path / "p", "tag", 'system = "S"\nuser = "{{ comments | join(\',\') }}"\nrequired = ["comments"]\n')
    template = prompts.load("tag", folder)
    assert template.path.parent == folder
    assert template.render(comments=["x", "y"])[-1]["content"] == "x,y"


@pytest.mark.parametrize("text,message", [
    ('system = "S"\nuser = "{% for x in comments %}"\n', "Jinja2"),
    ('system = "S"\nuser = \n', "not valid TOML"),
    ('user = "{{ comments }}"\n', "non-empty 'system'"),
    ('system = "S"\nuser = "hi"\nrequired = ["comments"]\n', "never uses required"),
    ('system = "S"\nuser = "hi"\nsurprise = 1\n', "unknown keys"),
])
def test_broken_templates_give_one_clear_error(tmp_path, text, message):
    folder = write(tmp_path / "p", "tag", text)
    with pytest.raises(ConfigError, match=message):
        prompts.load("tag", folder)


def test_unknown_variable_is_reported_with_the_available_ones(tmp_path):
    folder = write(tmp_path / "p", "tag", 'system = "S"\nuser = "{{ comments }} {{ mood }}"\n')
    with pytest.raises(ConfigError, match=r"unknown variable\(s\) \['mood'\]"):
        prompts.load("tag", folder).check_variables({"comments"})


def test_missing_template_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="no prompt template named 'nope'"):
        prompts.load("nope")
    with pytest.raises(ConfigError, match="prompts folder not found"):
        prompts.load("tag", tmp_path / "missing")
