"""The tagging prompt holds the most telling part of a user, within the token budget."""

from __future__ import annotations

from tagger.llm.models import word_counter
from tagger.stages.candidates import CandidateExtractor
from tagger.stages.excerpts import GAP, PromptFiller, sentences


def words(texts):
    return [len(t.split()) for t in texts]


def phrases(text: str) -> list[str]:
    return text.lower().replace(".", " ").split()


def test_sentences_split_on_full_stops_and_cut_run_ons():
    assert sentences("One two. Three four! Five?") == ["One two.", "Three four!", "Five?"]
    run_on = " ".join(["word"] * 130)
    assert [len(s.split()) for s in sentences(run_on)] == [60, 60, 10]
    assert sentences("很好。物流快！") == ["很好。", "物流快！"]


def test_newest_comment_then_the_sentences_of_the_best_candidates():
    comments = ["Thanks all.",  # the newest: short, goes in whole
                "I had lunch. My bike chain broke on the hill.",
                "The weather was fine. New bike tyres are great. Lunch again."]
    filled = PromptFiller(words, budget=14).fill(comments, ["bike", "tyres", "chain"], phrases)
    # "New bike tyres are great." holds the two best candidates; then "chain" (bike already held)
    assert filled.lines == ["Thanks all.", "… My bike chain broke on the hill.", "… New bike tyres are great. …"]
    assert filled.comments == 3


def test_nothing_past_the_budget_and_no_sentence_without_a_new_candidate():
    comments = ["first.", "dog dog dog dog dog dog dog.", "cat here.", "cat there.", "nothing at all."]
    filled = PromptFiller(words, budget=6).fill(comments, ["cat", "dog"], phrases)
    assert sum(words(filled.lines)) <= 6 + 1  # + the gap marks
    assert filled.lines == ["first.", "cat here."]  # the dog sentence does not fit; one cat sentence is enough
    assert all("nothing" not in line for line in filled.lines)


def test_a_newest_comment_longer_than_half_the_budget_keeps_its_head():
    comments = [" ".join(["alpha"] * 100) + ".", "beta here."]
    filled = PromptFiller(words, budget=40).fill(comments, ["beta"], phrases)
    assert filled.lines[0].startswith("alpha") and sum(words(filled.lines[:1])) <= 20
    assert filled.lines[1] == "beta here."


def test_ties_go_to_the_newer_comment_and_the_result_repeats():
    comments = ["x.", "old guitar.", "new guitar."]
    filler = PromptFiller(words, budget=4)
    first = filler.fill(comments, ["guitar"], phrases)
    assert first.lines == ["x.", "old guitar."]  # comment order is newest first: index 1 is newer than 2
    assert filler.fill(comments, ["guitar"], phrases) == first


def test_the_extractor_phrases_find_candidates_in_their_canonical_form():
    texts = ["My mics hum a lot. The weather is nice.", "This mic is clear.", "Dog food.", "Cat toys."]
    extractor = CandidateExtractor().fit(texts)
    candidates = extractor.candidates(texts[0])
    assert "mic" in candidates
    filled = PromptFiller(word_counter, budget=12).fill(["Hello there.", texts[0]], candidates, extractor.phrases)
    assert "My mics hum a lot." in " ".join(filled.lines)


def test_gap_marks_show_skipped_sentences():
    filled = PromptFiller(words, budget=20).fill(["a.", "skip one. take guitar. skip two."], ["guitar"], phrases)
    assert filled.lines[1] == f"{GAP.lstrip()}take guitar.{GAP.rstrip()}"
