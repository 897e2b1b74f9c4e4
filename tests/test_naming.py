from __future__ import annotations

import json
import re

import numpy as np

from tagger import prompts
from tagger.cache import ResultCache
from tagger.llm.base import GenerationParams
from tagger.llm.fake import FakeEngine
from tagger.stages.naming import (NamingOptions, SegmentProfile, label_options, name_segments, profile_segments,
                                  template_description)
from tagger.stages.recommend import top_items_by_lift
from tagger.schemas import Tag, TaggedUser, UserDocument


def profiles():
    return [SegmentProfile(0, 10, ["guitar", "amplifier"], ["string"], ["my guitar"], [1]),
            SegmentProfile(1, 8, ["dog", "leash"], ["walk"], ["dog loves"], [0])]


def name(engine, language="en", ps=None):
    options = NamingOptions(params=GenerationParams(max_tokens=60), language=language)
    return name_segments(ps or profiles(), engine, prompts.load("name"), options, cache=ResultCache(None))


def label(text, description="They like it a lot."):
    return json.dumps({"label": text, "description": description})


def test_names_are_built_from_the_segments_own_phrases():
    options = label_options(profiles()[1])
    assert options[0] == "dog owners"  # a role noun from prompts/data/roles.toml
    assert all(o.split()[0] in {"dog", "leash", "walk"} for o in options)
    assert label_options(SegmentProfile(0, 5, ["board game", "skin care"], [], [], []))[:2] == \
        ["board game players", "skin care fans"]
    # "buyers" only when the data are shoppers' reviews (--audience customers)
    assert label_options(SegmentProfile(0, 5, ["skin care"], [], [], []), audience="customers")[:2] == \
        ["skin care buyers", "skin care fans"]
    assert label_options(SegmentProfile(0, 5, ["garden", "seed"], [], [], []))[0] == "gardeners"


def test_built_names_need_a_noun_before_the_role():
    # "install" and "arrive" are only ever verbs, "expensive" only an adjective: a name is built
    # from the next phrase that can be a noun; an unknown word (a brand) is kept.
    options = label_options(SegmentProfile(0, 5, ["install", "hose"], ["arrive", "expensive", "nintendo"], [], []))
    assert {o.split()[0] for o in options} == {"hose", "nintendo"}
    # with no noun at all the segment still gets a name rather than "segment N"
    assert label_options(SegmentProfile(0, 5, [], ["arrive", "expensive"], [], []))[0] == "arrive fans"


def test_llm_picks_one_of_the_built_names_and_sees_them_and_the_neighbours():
    engine = FakeEngine([label("guitar players", "Customers who play guitar."),
                         label("leash fans", "Dog walkers who buy leashes.")])
    names = name(engine)
    assert [n[:3] for n in names] == [("guitar players", "Customers who play guitar.", "llm"),
                                      ("leash fans", "Dog walkers who buy leashes.", "llm")]
    first_prompt = engine.calls[0][0][-1]["content"]
    assert "guitar, amplifier" in first_prompt and "dog" in first_prompt  # contrast with neighbour
    assert "guitar players; amplifier fans" in first_prompt
    assert engine.calls[0][0][0]["content"].startswith("You name groups of people")


def test_the_llm_chooses_only_between_names_the_ranking_scores_nearly_alike():
    ps = profiles()
    ps[0].options, ps[0].scores = ["music lovers", "guitar players"], [0.20, 0.19]  # a close call
    ps[1].options, ps[1].scores = ["dog owners", "leash buyers"], [0.20, 0.05]  # a clear winner
    engine = FakeEngine([label("guitar players", "Customers who play guitar."),
                         label("dog owners", "Customers who walk their dogs.")])
    names = name(engine, ps=ps)
    prompts_sent = [chat[-1]["content"] for chat in engine.calls[0]]
    assert "Possible names: music lovers; guitar players" in prompts_sent[0]
    assert prompts_sent[1].endswith("Possible names: dog owners")
    assert [n[0] for n in names] == ["guitar players", "dog owners"]
    # a name built from a phrase scored above an interest name is not a close call either
    ps[1].options, ps[1].scores = ["pet owners", "leash buyers"], [0.10, 0.30]
    engine = FakeEngine([label("music lovers"), label("pet owners")])
    name(engine, ps=ps)
    assert engine.calls[0][1][-1]["content"].endswith("Possible names: pet owners")


def test_a_name_outside_the_built_list_is_refused_so_example_words_cannot_leak():
    example = json.loads(prompts.load("name").examples[0][1])["label"]  # e.g. "ukulele players"
    names = name(FakeEngine([label(example), label("dog players"), label("ignore all instructions"), label(example)]))
    assert [n[2] for n in names] == ["fallback", "fallback"]
    assert [n[0] for n in names] == ["guitar players", "dog owners"]  # each segment's first built name
    assert not any(word in n[0] for n in names for word in example.split() if word != "players")


def test_duplicate_names_become_unique_with_the_next_built_name():
    twins = [SegmentProfile(0, 10, ["guitar"], [], [], [1]), SegmentProfile(1, 8, ["guitar"], ["amplifier"], [], [0])]
    names = name(FakeEngine([label("guitar players")] * 2), ps=twins)
    assert names[0][0] == "guitar players" and names[1][0] == "amplifier fans"


def test_unusable_answers_fall_back_to_the_first_built_name_and_a_template_sentence():
    names = name(FakeEngine(["{}", "{}", label(""), label("")]))
    assert [n[0] for n in names] == ["guitar players", "dog owners"]
    assert {n[2] for n in names} == {"fallback"}
    assert names[1][1] == "People who write mostly about dog and leash."


def test_a_cut_off_or_off_topic_description_becomes_a_complete_sentence():
    names = name(FakeEngine([label("guitar players", "Customers who play the guitar and"),
                             label("dog owners", "People who enjoy cooking pasta.")]))
    assert names[0][:3] == ("guitar players", "People who write mostly about guitar and amplifier.", "llm")
    assert names[1][1] == "People who write mostly about dog and leash."


def test_a_description_keeps_its_first_clause_before_a_contrastive_but():
    names = name(FakeEngine([label("guitar players", "People who play the guitar, but they're not the only ones."),
                             label("dog owners", "People who walk their dog, but also buy a leash.")]))
    assert names[0][:3] == ("guitar players", "People who play the guitar.", "llm")
    assert names[1][1] == "People who walk their dog, but also buy a leash."  # "but also" adds: kept whole


def test_chinese_data_needs_a_chinese_description():
    ps = [SegmentProfile(0, 9, ["读书"], [], [], [1]), SegmentProfile(1, 9, ["小说", "阅读"], [], [], [0])]
    options = [label_options(p, "zh") for p in ps]
    assert options[1][0] == "小说读者"
    names = name(FakeEngine([label(options[0][0], "Readers of books."), label(options[1][0], "喜欢读小说的顾客。")]),
                 language="zh", ps=ps)
    assert names[0][:3] == (options[0][0], "主要谈论：读书。", "llm")
    assert names[1][:3] == ("小说读者", "喜欢读小说的顾客。", "llm")


def test_a_segment_without_shared_tags_is_named_from_its_words_or_items():
    users = [TaggedUser(user_id=str(i), status="failed") for i in range(8)]
    docs = [UserDocument(user_id=str(i), comments=["magazine subscription arrived late" if i < 4 else "ok"],
                         items=["Vogue"] if i >= 4 else [], n_comments=1) for i in range(8)]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p0, p1 = profile_segments(labels, np.ones(8), np.eye(2), users, docs)
    assert p0.top_tags == [] and "magazine" in p0.top_terms
    assert p1.top_terms == ["Vogue"]  # no shared word: its members' items
    names = name(None, ps=[p0, p1])
    assert not any(n[0].startswith("segment") for n in names)


def test_profiles_rank_distinctive_tags_and_pick_evidence():
    users = [TaggedUser(user_id=str(i), status="tagged", tags=[Tag(tag="guitar" if i < 3 else "dog", evidence=f"q{i}"),
                                                                 Tag(tag="music", evidence="m")]) for i in range(6)]
    docs = [UserDocument(user_id=str(i), comments=["guitar strings" if i < 3 else "dog walks"], n_comments=1) for i in range(6)]
    labels = np.array([0, 0, 0, 1, 1, 1])
    centroids = np.eye(2)
    p0, p1 = profile_segments(labels, np.ones(6), centroids, users, docs)
    assert p0.top_tags[0] == "guitar" and p1.top_tags[0] == "dog"
    assert p0.quotes and p0.neighbours == [1]


def test_words_the_data_uses_as_verbs_build_no_name():
    # Segment 0 writes "wait" only as a verb ("can't wait") and "bowl" only as a noun ("the bowl"),
    # and both are its tags; a name is built on "bowl" and never on "wait".
    users = [TaggedUser(user_id=str(i), status="tagged", tags=[Tag(tag="wait", evidence="can't wait"),
                                                             Tag(tag="bowl", evidence="the bowl")] if i < 3 else
                        [Tag(tag="leash", evidence="the leash")]) for i in range(6)]
    docs = [UserDocument(user_id=str(i), comments=["I can't wait to use the bowl. We wait for the bowl." if i < 3
                                                   else "My dog likes the leash."], n_comments=1) for i in range(6)]
    p0, p1 = profile_segments(np.array([0, 0, 0, 1, 1, 1]), np.ones(6), np.eye(2), users, docs)
    assert set(p0.top_tags) == {"wait", "bowl"} and "wait" in p0.verbs and "bowl" not in p0.verbs
    assert label_options(p0) and all(o.startswith("bowl") for o in label_options(p0))


def test_a_segment_that_shares_only_verbs_is_named_from_its_items():
    # Segment 0 shares no tag and only the verb "wait" ("can't wait"); three of its four members
    # bought a print magazine, which no one in segment 1 did.
    users = [TaggedUser(user_id=str(i), status="tagged", tags=[] if i < 4 else [Tag(tag="leash", evidence="the leash")])
             for i in range(8)]
    items = [["Garden Life Print Magazine"], ["Cooking Print Magazine"], ["Travel Print Magazine"], ["USB cable"]]
    texts = ["I can't wait for the next one."] * 4 + ["My dog likes the leash."] * 4
    docs = [UserDocument(user_id=str(i), comments=[texts[i]], n_comments=1, items=items[i] if i < 4 else ["Dog leash"])
            for i in range(8)]
    p0, p1 = profile_segments(np.array([0] * 4 + [1] * 4), np.ones(8), np.eye(2), users, docs)
    assert "wait" in p0.top_terms and "print magazine" in p0.top_terms
    assert "magazine" in label_options(p0)[0] and not any("wait" in o for o in label_options(p0))
    assert not any("magazine" in t for t in p1.top_terms)  # a segment with a noun of its own keeps its terms
    assert "wait" not in template_description(p0) and "magazine" in template_description(p0)


def test_top_items_by_lift():
    docs = [UserDocument(user_id=str(i), comments=["x"], n_comments=1, items=items)
            for i, items in enumerate([["picks", "cable"], ["picks", "cable"], ["cable"], ["bowl"], ["bowl", "cable"]])]
    result = top_items_by_lift(np.array([0, 0, 0, 1, 1]), docs)
    assert result[0][0][0] == "picks" and result[0][0][1] > 1
    assert result[1][0][0] == "bowl"


def test_copied_example_and_looping_descriptions_are_replaced():
    example = json.loads(prompts.load("name").examples[0][1])
    names = name(FakeEngine([label("guitar players", example["description"]),
                             label("dog owners", "They love the dog, love the dog, love the dog, love the dog.")]))
    assert names[0][0] == "guitar players" and names[0][1] != example["description"]
    assert "love the dog, love the dog, love the dog" not in names[1][1]
    looping = "Customers who make their own products, using the guitar to make their own products."
    names = name(FakeEngine([label("guitar players", looping), label("dog owners", "Customers who walk their dog.")]))
    assert names[0][1] == "People who write mostly about guitar and amplifier."
    assert names[1][1] == "Customers who walk their dog."


class KeywordEncoder:
    """Each text is the sum of one axis per known word it contains (unit length): similarities
    are fixed by construction, so the ranking below has exactly one right answer."""

    AXES = {"dog": 0, "pet": 0, "leash": 0, "guitar": 1, "music": 1, "amplifier": 1, "bike": 2, "cyclists": 2}

    def encode(self, texts):
        out = np.zeros((len(texts), 4), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, self.AXES.get(word, 3)] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def topics_of(names):
    """Taxonomy entries for tests: a list of names (meaning = name) or a table of name = meaning."""
    from tagger.stages.taxonomy import Topic

    table = names if isinstance(names, dict) else {n: "" for n in names}
    return [Topic(name=n, meaning=f"{n} ({m})" if m else n, iab_id=str(100 + i), iab_path=f"Test > {n}", tier=2)
            for i, (n, m) in enumerate(table.items())]


def test_taxonomy_names_go_to_the_one_segment_they_point_at_and_must_be_grounded():
    from tagger.stages.naming import rank_options

    ps = profiles()  # 0: guitar, amplifier; 1: dog, leash
    centroids = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    rank_options(ps, centroids, KeywordEncoder(), topics=topics_of(["pet owners", "music lovers", "cyclists"]))
    assert "music lovers" in ps[0].options and "pet owners" in ps[1].options
    # "cyclists" points at neither segment, and each taxonomy name goes to one segment only
    assert not any("cyclists" in p.options for p in ps)
    assert "pet owners" not in ps[0].options and "music lovers" not in ps[1].options
    # the segment's own built names stay offered beside them, so none is lost
    assert set(label_options(ps[1])) <= set(ps[1].options)
    # a taxonomy name carries its node, a built one none
    assert ps[1].sources["pet owners"] == {"iab_id": "100", "iab_path": "Test > pet owners"}
    assert "dog owners" not in ps[1].sources


def test_taxonomy_and_built_names_are_ranked_on_one_scale():
    from tagger.stages.naming import fallback_name, rank_options

    # "music lovers" half points at the bike axis: a barely-fitting taxonomy name ranks below the
    # segment's own "guitar players" instead of ahead of every built name.
    ps = profiles()
    centroids = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    rank_options(ps, centroids, KeywordEncoder(), topics=topics_of({"music lovers": "bike"}))
    assert ps[0].options.index("music lovers") > ps[0].options.index("guitar players")
    assert ps[0].scores == sorted(ps[0].scores, reverse=True)
    name = fallback_name(ps[0])
    assert name.label in label_options(ps[0]) and (name.iab_id, name.iab_path) == ("", "")
    # a taxonomy name that fits at least as well as any built one wins and keeps its node
    ps = profiles()
    rank_options(ps, centroids, KeywordEncoder(), topics=topics_of({"dog": ""}))
    name = fallback_name(ps[1])
    assert (name.label, name.iab_id, name.iab_path) == ("dog", "100", "Test > dog")


def test_a_taxonomy_name_near_the_segment_but_far_from_its_phrases_is_not_offered():
    from tagger.stages.naming import rank_options

    # The segment's centroid leans a little to the bike axis (cosine 0.3, under GROUNDING_TEXT),
    # and none of its phrases is about bikes.
    ps = [SegmentProfile(0, 10, ["guitar"], [], [], []), SegmentProfile(1, 10, ["dog"], [], [], [])]
    centroids = np.array([[0, 0.954, 0.3, 0], [1, 0, 0, 0]], np.float32)
    rank_options(ps, centroids, KeywordEncoder(), topics=topics_of(["cyclists"]))
    assert ps[0].options == label_options(ps[0])


class SenseEncoder:
    """Axes: music words, art words, anything else; a text is the unit sum of its words' axes."""

    AXES = {"music": 0, "song": 0, "artist": 0, "artists": 0, "painting": 1, "drawing": 1, "paint": 1}

    def encode(self, texts):
        out = np.zeros((len(texts), 3), np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, self.AXES.get(word, 2)] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_an_interest_whose_meaning_points_at_another_segment_is_not_offered():
    from tagger.stages.naming import rank_options

    def segments():  # 0: recording artists and songs; 1: painters
        return [SegmentProfile(0, 10, ["artist", "song"], [], [], []), SegmentProfile(1, 10, ["paint"], [], [], [])]

    centroids = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    # By its word alone "artists" points at the music segment and the tag "artist" grounds it ...
    ps = segments()
    rank_options(ps, centroids, SenseEncoder(), topics=topics_of(["artists", "music lovers"]))
    assert "artists" in ps[0].options
    # ... its meaning (painting, drawing) points at the painters, so it is offered to neither.
    ps = segments()
    rank_options(ps, centroids, SenseEncoder(),
                 topics=topics_of({"artists": "painting and drawing", "music lovers": "music and songs"}))
    assert "music lovers" in ps[0].options
    assert not any("artists" in p.options for p in ps)


def names_of(ps):
    return [n[0] for n in name(None, ps=ps)]


def test_chinese_names_are_built_on_nouns_never_on_a_verb_or_a_retailer():
    # jieba files "京东" (the retailer) as a place and "安装" (install) as a verb: neither names
    # anybody; a product word takes "买家", a hotel "住客", a hobby "爱好者" (prompts/data/roles.toml).
    assert label_options(SegmentProfile(0, 9, ["京东", "洗发水"], [], [], []), "zh")[0] == "洗发水买家"
    assert label_options(SegmentProfile(0, 9, ["安装", "热水器"], [], [], []), "zh") == ["热水器买家"]
    assert label_options(SegmentProfile(0, 9, ["酒店"], [], [], []), "zh") == ["酒店住客"]
    assert label_options(SegmentProfile(0, 9, ["摄影"], [], [], []), "zh") == ["摄影爱好者"]
    # a product with a role noun of its own names a segment before the product's features do
    phone = SegmentProfile(0, 9, ["短信", "铃声"], ["功能", "手机"], [], [])
    assert label_options(phone, "zh")[0] == "手机用户"
    # ... but a hobby word ("玩游戏" → 爱好者) is no product
    assert label_options(SegmentProfile(0, 9, ["玩游戏", "平板"], [], [], []), "zh")[0] == "平板用户"


class ZhKeywordEncoder(KeywordEncoder):
    # Chinese has no spaces: each whole text is one key.
    AXES = {"洗发水": 0, "洗发水买家": 0, "护发用户": 0, "热水器": 1, "热水器买家": 1}


def test_chinese_segments_take_their_own_product_names():
    from tagger.stages.naming import fallback_name, rank_options

    ps = [SegmentProfile(0, 9, ["洗发水", "京东"], [], [], [1]), SegmentProfile(1, 9, ["热水器"], [], [], [0])]
    centroids = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32)
    rank_options(ps, centroids, ZhKeywordEncoder(), "zh", topics=topics_of(["护发用户"]))
    assert ps[0].options[0] == "洗发水买家"
    assert [fallback_name(p, "zh")[0] for p in ps] == ["洗发水买家", "热水器买家"]
    # a segment with no phrase at all still gets a readable Chinese name
    assert fallback_name(SegmentProfile(2, 9, [], [], [], []), "zh")[0] == "用户群 2"


def test_a_description_is_kept_when_its_nouns_come_from_the_segment():
    def described(text):
        return name(FakeEngine([label("guitar players", text), label("dog owners", "Customers who walk their dog.")]))[0][1]

    template = "People who write mostly about guitar and amplifier."
    # adjectives qualify and are not judged; "guitars" meets "guitar"; a filler noun is generic
    kept = "Customers who play guitars through a loud amplifier in a variety of ways."
    assert described(kept) == kept
    # a member's review in the first person is no description of the group
    assert described("This guitar is a good one. I love my amplifier.") == template
    # two nouns the segment never showed ("perspective", "life") are padding, however many fit
    assert described("Customers who play guitar and amplifier with a different perspective on life.") == template


def test_a_parent_keeps_only_names_that_speak_for_most_of_its_members():
    from tagger.stages.naming import name_tree

    def leaf(sid, size, tags, parent, option, path=""):
        p = SegmentProfile(sid, size, tags, [], [], [], options=[option], scores=[1.0], level=0, parent_id=parent)
        p.heads = {option: tags[0]}
        if path:
            p.sources = {option: {"iab_id": str(sid), "iab_path": path}}
        return p

    def parent(sid, size, options, paths):
        p = SegmentProfile(sid, size, ["gift", "yarn"], [], [], [], options=options, scores=[1.0] * len(options),
                           level=1, parent_id=-1)
        p.sources = {o: {"iab_id": "9", "iab_path": path} for o, path in paths.items()}
        p.heads = {o: o.split(" > ")[-1].lower() if o in paths else o.split()[0] for o in options}
        return p

    tree = [
        leaf(0, 30, ["baseball", "bat"], 4, "baseball fans", "Sports > Baseball"),
        leaf(1, 20, ["fishing", "rod"], 4, "fishing sports fans", "Sports > Fishing Sports"),
        leaf(2, 25, ["skin care", "serum"], 5, "skin care followers", "Style & Fashion > Beauty > Skin Care"),
        leaf(3, 15, ["yarn", "knitting"], 5, "knitting enthusiasts"),
        # "sports fans" is the node above both leaves; "lotteries" speaks for neither
        parent(4, 50, ["lotteries shoppers", "sports fans"], {"lotteries shoppers": "Shopping > Lotteries",
                                                             "sports fans": "Sports"}),
        # "yarn lovers" speaks for the knitters alone (15 of 40 members): under half
        parent(5, 40, ["yarn lovers"], {}),
    ]
    options = NamingOptions(params=GenerationParams(max_tokens=60))
    names = name_tree(tree, None, prompts.load("name"), options, cache=ResultCache(None))
    assert [n.label for n in names[:4]] == ["baseball fans", "fishing sports fans", "skin care followers",
                                           "knitting enthusiasts"]
    assert names[4].label == "sports fans" and names[4].iab_path == "Sports"
    # no name speaks for most members: the children's own subjects, largest first
    assert names[5].label == "skin care / yarn" and names[5].iab_path == ""
    assert names[5].description == "People who write mostly about gift and yarn."
    # a child under the k-anonymity floor is counted, never named
    options = NamingOptions(params=GenerationParams(max_tokens=60), k_anonymity=20)
    names = name_tree(tree, None, prompts.load("name"), options, cache=ResultCache(None))
    assert names[5].label == "skin care +1"
