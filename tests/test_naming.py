from __future__ import annotations

import json

import numpy as np

from tagger import prompts
from tagger.cache import ResultCache
from tagger.llm.base import GenerationParams
from tagger.llm.fake import FakeEngine
from tagger.stages.naming import SegmentProfile, name_segments, profile_segments
from tagger.stages.recommend import top_items_by_lift
from tagger.schemas import Tag, TaggedUser, UserDocument


def profiles():
    return [SegmentProfile(0, 10, ["guitar", "amplifier"], ["strings"], ["my guitar"], [1]),
            SegmentProfile(1, 8, ["dog treats", "leash"], ["walks"], ["dog loves"], [0])]


def name(engine, language="en", ps=None):
    return name_segments(ps or profiles(), engine, prompts.load("name"), params=GenerationParams(max_tokens=60),
                         cache=ResultCache(None), language=language)


def label(text, description="d"):
    return json.dumps({"label": text, "description": description})


def test_llm_names_are_used_and_neighbours_are_shown():
    engine = FakeEngine([label("guitarists"), label("dog owners")])
    names = name(engine)
    assert [n[0] for n in names] == ["guitarists", "dog owners"] and {n[2] for n in names} == {"llm"}
    first_prompt = engine.calls[0][0][-1]["content"]
    assert "guitar, amplifier" in first_prompt and "dog treats" in first_prompt  # contrast with neighbour


def test_a_label_unrelated_to_the_interests_is_refused():
    names = name(FakeEngine([label("fish players"), label("dog owners"), label("ignore all instructions")]))
    assert names[0][2] == "fallback" and names[1] == ("dog owners", "d", "llm")


def test_duplicate_labels_become_unique():
    names = name(FakeEngine([label("guitar and dog people"), label("guitar and dog people")]))
    assert len({n[0].lower() for n in names}) == 2


def test_unusable_answers_fall_back_to_top_tags():
    names = name(FakeEngine(["{}", "{}", label(""), label("")]))
    assert [n[0] for n in names] == ["guitar & amplifier", "dog treats & leash"]
    assert {n[2] for n in names} == {"fallback"}


def test_chinese_data_needs_a_chinese_label():
    names = name(FakeEngine([label("book lovers"), label("爱读书"), label("still english")]),
                 language="zh", ps=[SegmentProfile(0, 9, ["读书"], [], [], [1]), SegmentProfile(1, 9, ["书籍", "阅读"], [], [], [0])])
    assert names[0][2] == "fallback" and names[1][0] == "爱读书"


def test_profiles_rank_distinctive_tags_and_pick_evidence():
    users = [TaggedUser(user_id=str(i), status="tagged", tags=[Tag(tag="guitar" if i < 3 else "dog", evidence=f"q{i}"),
                                                                 Tag(tag="music", evidence="m")]) for i in range(6)]
    docs = [UserDocument(user_id=str(i), comments=["guitar strings" if i < 3 else "dog walks"], n_comments=1) for i in range(6)]
    labels = np.array([0, 0, 0, 1, 1, 1])
    centroids = np.eye(2)
    p0, p1 = profile_segments(labels, np.ones(6), centroids, users, docs)
    assert p0.top_tags[0] == "guitar" and p1.top_tags[0] == "dog"
    assert p0.quotes and p0.neighbours == [1]


def test_top_items_by_lift():
    docs = [UserDocument(user_id=str(i), comments=["x"], n_comments=1, items=items)
            for i, items in enumerate([["picks", "cable"], ["picks", "cable"], ["cable"], ["bowl"], ["bowl", "cable"]])]
    result = top_items_by_lift(np.array([0, 0, 0, 1, 1]), docs)
    assert result[0][0][0] == "picks" and result[0][0][1] > 1
    assert result[1][0][0] == "bowl"


def test_copied_example_and_looping_descriptions_are_replaced():
    example = json.loads(prompts.load("name").examples[0][1])
    names = name(FakeEngine([label("guitar fans", example["description"]),
                             label("dog owners", "they love the dogs, love the dogs, love the dogs, love the dogs")]))
    assert names[0][0] == "guitar fans" and names[0][1] != example["description"]
    assert "love the dogs, love the dogs, love the dogs" not in names[1][1]
    assert name(FakeEngine([label(example["label"])] * 2 + [label("dog owners")]))[0][2] == "fallback"


def test_a_label_borrowing_the_examples_words_is_refused():
    example = json.loads(prompts.load("name").examples[0][1])["label"]  # e.g. "guitar players"
    borrowed = f"dog {example.split()[-1]}"
    names = name(FakeEngine([label("guitar fans"), label(borrowed), label(borrowed)]))
    assert names[0] == ("guitar fans", "d", "llm") and names[1][2] == "fallback"
