import random

from tagger import prompts
from tagger.cache import ResultCache
from tagger.stages.candidates import CandidateExtractor
from tagger.stages.canon import canonical, chinese_words
from tagger.llm.base import GenerationParams
from tagger.llm.fake import FakeEngine
from tagger.schemas import Tag, TaggedUser, UserDocument
from tagger.stages.tagging import TagOptions, canonical_tags, tag_users

TOPICS = {
    "dog": ["dog", "leash", "kibble", "puppy", "collar", "fetch"],
    "guitar": ["guitar", "strings", "amplifier", "pick", "chord", "capo"],
    "garden": ["garden", "seeds", "soil", "tomato", "trowel", "compost"],
}


def corpus(users_per_topic=20):
    """Three topics by construction; every user also writes the same service sentence."""
    rng = random.Random(0)
    texts = []
    for words in TOPICS.values():
        for _ in range(users_per_topic):
            picked = rng.sample(words, 4)
            texts.append(f"The {picked[0]} and {picked[1]} here. My {picked[2]}, the {picked[3]}. Shipping was quick.")
    return texts


def test_a_plural_merges_into_its_singular_only_when_the_data_holds_the_singular():
    assert canonical("mics", {"mic"}) == "mic"
    assert canonical("board games", {"game"}) == "board game"
    assert canonical("batteries", {"battery"}) == "battery"
    assert canonical("clothes", {"clothes"}) == "clothes"  # no "clothe" written anywhere
    assert canonical("mics", set()) == "mics"


def test_candidates_are_canonical_and_keep_the_written_form_for_quotes():
    extractor = CandidateExtractor().fit(["my mics hum", "this mic is clear", "mic stand wobbles"])
    assert "mic" in extractor.candidates("my mics hum") and "mics" not in extractor.candidates("my mics hum")
    assert extractor.surfaces("my mics hum")["mic"] == "mics"


def test_grounded_tags_are_canonical_and_their_quotes_verbatim():
    docs = [UserDocument(user_id="a", comments=["My mics hum a lot."], n_comments=1),
            UserDocument(user_id="b", comments=["This mic is clear."], n_comments=1)]
    tagged = tag_users(docs, FakeEngine(), prompts.load("tag"), TagOptions(params=GenerationParams(max_tokens=60)),
                       cache=ResultCache(None))
    first = {t.tag: t.evidence for t in tagged[0].tags}
    assert "mic" in first and "mics" in first["mic"] and first["mic"] in docs[0].comments[0]


def test_phrases_spread_over_every_topic_are_stop_phrases():
    texts = corpus()
    extractor = CandidateExtractor().fit(texts)
    assert "shipping" in extractor.stop_ and "quick" in extractor.stop_
    assert not extractor.stop_ & {w for words in TOPICS.values() for w in words}
    assert "shipping" not in extractor.candidates(texts[0])
    assert "dog" in extractor.candidates("The dog and the leash. Shipping was quick.")


def test_too_few_users_means_no_stop_phrases():
    assert CandidateExtractor().fit(corpus(users_per_topic=1)).stop_ == frozenset()


def test_chinese_words_are_not_cut_into_two_character_fragments():
    words = chinese_words("这个洗发水很好用，头发很顺滑")
    assert "洗发水" in words and "发水" not in words
    extractor = CandidateExtractor().fit(["这个洗发水很好用", "洗发水的味道不错", "手机屏幕很清晰"])
    assert "洗发水" in extractor.candidates("这个洗发水很好用")


def test_canonical_tags_merge_forms_across_users_and_keep_evidence():
    users = [TaggedUser(user_id="a", status="tagged",
                        tags=[Tag(tag="mics", evidence="my mics"), Tag(tag="mic", evidence="a mic")]),
             TaggedUser(user_id="b", status="tagged", tags=[Tag(tag="mic", evidence="the mic")])]
    merged = canonical_tags(users)
    assert [(t.tag, t.evidence) for t in merged[0].tags] == [("mic", "my mics")]
    assert [t.tag for t in merged[1].tags] == ["mic"]


def test_a_previous_runs_statistics_keep_a_returning_users_candidates():
    # Next month the only other user who wrote "banjo" has left and a tenth of the rest with
    # them: fitted afresh, "banjo" is then this user's alone and drops down the list (a new
    # prompt, no cached answer); with last month's statistics the list is the one they had.
    texts = corpus()
    me = "The guitar and the banjo here. My strings, the chord. Shipping was quick. A pick."
    last_month = CandidateExtractor().fit([me, *texts, "My banjo slipped."])
    had = last_month.candidates(me)
    newcomers = ["A ukulele for my son.", "The ukulele strings.", "Tuning my ukulele.", "A kazoo!"]
    this_month = [me, *(t for i, t in enumerate(texts) if i % 20 not in (0, 1)), *newcomers]
    assert CandidateExtractor().fit(this_month).candidates(me) != had
    kept = last_month.update(this_month)
    assert kept.candidates(me) == had
    # a phrase new since then counts once three users write it (a segment needs at least three)
    assert kept.df_["ukulele"] == 3 and "kazoo" not in kept.df_
