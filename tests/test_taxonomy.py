"""The naming vocabulary: the shipped IAB taxonomy, a user's TSV or TOML, and bad files."""

from __future__ import annotations

import pytest

from tagger.errors import ConfigError
from tagger.stages.taxonomy import load_taxonomy, render


def test_the_shipped_iab_taxonomy_loads_with_ids_paths_and_audience_names():
    topics = load_taxonomy("iab")
    assert len(topics) > 600  # Content Taxonomy 3.1 has ~700 nodes; two branches are skipped
    by_path = {t.iab_path: t for t in topics}
    baseball = by_path["Sports > Baseball"]
    assert (baseball.name, baseball.iab_id, baseball.tier) == ("baseball fans", "545", 2)
    assert baseball.meaning == "Baseball (Sports)"
    assert by_path["Pets > Dogs"].name == "dog owners"
    assert by_path["Religion & Spirituality > Christianity"].name == "christianity followers"
    assert by_path["Shopping"].name == "shoppers"  # not "shopping shoppers"
    # brand-safety and media-genre lists say what content is, not who reads it
    assert not any(t.iab_path.startswith(("Sensitive Topics", "Genres")) for t in topics)


def test_render_follows_the_branch_rule():
    assert render("Dogs", "{singular} owners") == "dog owners"
    assert render("Sports", "{singular} fans") == "sports fans"  # a plural that is a noun of its own
    assert render("Information and Network Security", "{name} followers") == "information and network security followers"


def test_a_users_own_taxonomy_as_tsv_or_toml_and_none(tmp_path):
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("Unique ID\tParent\tName\tTier 1\tTier 2\tTier 3\tTier 4\n"
                   "1\t\tPets\tPets\t\t\t\n2\t1\tFerrets\tPets\tFerrets\t\t\n", encoding="utf-8")
    topics = load_taxonomy(tsv)
    assert [(t.name, t.iab_id, t.iab_path) for t in topics] == [("pet owners", "1", "Pets"),
                                                                 ("ferret owners", "2", "Pets > Ferrets")]
    toml = tmp_path / "mine.toml"
    toml.write_text('"ferret owners" = "ferrets, ferret food and cages"\n', encoding="utf-8")
    (topic,) = load_taxonomy(toml)
    assert (topic.name, topic.meaning, topic.iab_id) == ("ferret owners", "ferret owners (ferrets, ferret food and cages)", "")
    assert load_taxonomy("none") == ()


@pytest.mark.parametrize("content, message", [
    ("just some text\n", "IAB Content Taxonomy layout"),
    ('names = [\n', "not valid TOML"),
    ("answer = 42\n", "one `name"),
])
def test_a_bad_taxonomy_file_says_what_is_wrong(tmp_path, content, message):
    path = tmp_path / ("bad.toml" if "=" in content or "[" in content else "bad.tsv")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_taxonomy(path)


def test_a_missing_taxonomy_file_names_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="taxonomy file not found.*iab.*none"):
        load_taxonomy(tmp_path / "nope.tsv")
