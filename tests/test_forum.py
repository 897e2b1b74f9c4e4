from __future__ import annotations

import pytest

from tagger.stages.forum import TAIL_WORDS, drop_repeated_signatures, strip_quoted

PEPKE = ("Eric Pepke INTERNET: pepke@gw.scri.fsu.edu Supercomputer Computations Research Institute "
         "MFENET: pepke@fsu Florida State University SPAN: scri::pepke Tallahassee, FL 32306-4052")
FRANK = "-- ted frank | thf2@kimbark.uchicago.edu | the u of c law school | standard disclaimers |"


# --- strip_quoted: lines ---------------------------------------------------------------------------------

def test_quoted_lines_are_dropped_and_newlines_kept():
    text = "I disagree.\n> You said this\n>> and this\n> > and that\n|> and even this\n| > or this\nMy own point."
    assert strip_quoted(text) == ("I disagree.\nMy own point.", 1)


def test_each_quoted_passage_is_one_piece_and_blank_lines_inside_do_not_split_it():
    text = "> first\n\n> still first\nreply one\n> second\nreply two"
    stripped, pieces = strip_quoted(text)
    assert pieces == 2
    assert stripped.split() == ["reply", "one", "reply", "two"]
    assert "\n" in stripped


@pytest.mark.parametrize("line", [
    "In article <1993Apr5.1234@host.edu>, someone@host.edu (Some Name) writes:",
    "John Smith <js@x.org> wrote:",
    "On Mon, 12 Apr 1993, X wrote:",
    "Bill writes:",
    "Quoting Jane Doe:",
])
def test_attribution_lines_are_dropped(line):
    assert strip_quoted(f"{line}\n> what they said\nWhat I say.") == ("What I say.", 2)


def test_an_attribution_wrapped_over_two_lines_goes_whole():
    text = "On Mon, 12 Apr 1993 10:02, John Smith\n<js@x.org> wrote:\n> quoted\nmine"
    assert strip_quoted(text) == ("mine", 2)


def test_a_sentence_with_wrote_stays():
    for text in ("I wrote a letter to my senator.", "I wrote a letter to my senator.\nShe says it will pass.",
                 "Yesterday I wrote: nothing at all, and she says so too."):
        assert strip_quoted(text) == (text, 0)


def test_inline_quote_marker_in_collapsed_text_stays():
    text = "run cat a b > file and then 3 > 2 holds"
    assert strip_quoted(text) == (text, 0)


# --- strip_quoted: attributions in collapsed text ---------------------------------------------------------

@pytest.mark.parametrize("attribution", [
    "In article <1r6p8oINN8hi@clem.handheld.com>, jmd@cube.handheld.com (Jim De Bee) writes:",
    "In article <1r6p8oINN8hi@clem.handheld.com>, jmd@cube.handheld.com (Jim De Bee) says:",
    "In article <1r6p8oINN8hi@clem.handheld.com>, jmd@cube.handheld.com (Jim De Bee) writes...",
    "In article <1r6p8oINN8hi@clem.handheld.com> jmd@cube.handheld.com (Jim De Bee)",
    "In article <1r6p8oINN8hi@clem.handheld.com> jmd@cube.handheld.com",
    "In article <1r6p8oINN8hi@clem.handheld.com>",
    "In article <1r6p8oINN8hi@clem.handheld.com>,",
    "In article <1r6p8oINN8hi@clem.handheld.com> Jim De Bee writes:",
    "In a previous article, jmd@cube.handheld.com (Jim De Bee) says:",
    "Quoting jmd@cube.handheld.com (Jim De Bee) in article <1r6p8oINN8hi@clem.handheld.com>:",
    "Jim De Bee <jmd@cube.handheld.com> wrote:",
])
def test_inline_attributions_are_removed(attribution):
    assert strip_quoted(f"{attribution} Go to hell. I mean it.") == ("Go to hell. I mean it.", 1)


def test_an_inline_attribution_mid_text_leaves_both_sides():
    text = "First point. In article <abc@host.edu>, a@b.org (A. B. Name) writes: Second point."
    assert strip_quoted(text) == ("First point. Second point.", 1)


def test_a_cut_inline_attribution_keeps_the_unclosed_name():
    # the name's end and the user's first words cannot be told apart, so only id and address go
    text = "In article <1r6p8oINN8hi@clem.handheld.com>, jmd@cube.handheld.com (Jim De Go to hell."
    assert strip_quoted(text) == ("(Jim De Go to hell.", 1)


def test_a_writes_after_a_sentence_end_is_the_users_own():
    text = "In article <abc@host.edu> Perhaps so. The manual says: read it."
    assert strip_quoted(text) == ("Perhaps so. The manual says: read it.", 1)


def test_two_inline_attributions_are_two_pieces():
    text = "In article <a@h.edu>, x@h.edu (X) writes: one. In article <b@h.edu>, y@h.edu (Y) writes: two."
    assert strip_quoted(text) == ("one. two.", 2)


@pytest.mark.parametrize("text", [
    "Plain text with nothing to drop, not even a newline.",
    "Mail me at someone@example.com about the article.",
    "Two lines\nand no quote at all.",
    "",
])
def test_text_without_markers_comes_back_unchanged(text):
    stripped, pieces = strip_quoted(text)
    assert stripped is text and pieces == 0


# --- drop_repeated_signatures ---------------------------------------------------------------------------

def test_an_exact_signature_stays_only_in_the_newest_comment():
    comments = [f"Sassafras tea has less safrole than the root. {PEPKE}",
                f"The ATF should have waited them out. {PEPKE}",
                f"Root beer was made from the bark. {PEPKE}"]
    result, stripped = drop_repeated_signatures(comments)
    assert result == [comments[0], "The ATF should have waited them out.", "Root beer was made from the bark."]
    assert stripped == 2


def test_a_delimited_signature_goes_with_its_delimiter():
    comments = [f"Inner city kids can do legitimate work. {FRANK}", f"The law school admits them too. {FRANK}"]
    result, stripped = drop_repeated_signatures(comments)
    assert result == [comments[0], "The law school admits them too."] and stripped == 1


def test_a_near_repeat_with_one_changed_word_is_stripped():
    sig = "John Q Public | Acme Widgets Inc | phone 555-0100 ext {} | john@acme.example | opinions mine alone"
    comments = [f"The new widget ships in May. {sig.format(4711)}", f"Old widgets rust in the rain. {sig.format(4712)}"]
    result, stripped = drop_repeated_signatures(comments)
    assert result == [comments[0], "Old widgets rust in the rain."] and stripped == 1


def test_a_signature_with_a_changed_quote_line_is_stripped_whole():
    sig = "-- Mike Jones | AIX High-End Development | mjones@donald.aix.example.com {}"
    comments = [f"Compilers got faster this year. {sig.format('May you live in interesting times. - Chinese curse')}",
                f"Fortran still wins on arrays. {sig.format('Make it right before you make it faster. - anon')}"]
    result, stripped = drop_repeated_signatures(comments)
    assert result == [comments[0], "Fortran still wins on arrays."] and stripped == 1


def test_a_comment_that_is_only_the_signature_keeps_its_text():
    comments = [f"My first real post about tea. {PEPKE}", PEPKE]
    assert drop_repeated_signatures(comments) == (comments, 0)


def test_different_endings_are_untouched_and_order_and_length_kept():
    comments = ["I like the new stadium a lot.", "The pitcher was tired by the sixth inning, clearly.",
                "Thanks in advance for any help.", "Has anyone tried the Mac version of the program?"]
    result, stripped = drop_repeated_signatures(comments)
    assert result == comments and stripped == 0


def test_a_short_shared_ending_without_a_signature_mark_stays():
    comments = ["I think so. Thanks in advance for any help.", "Who knows. Thanks in advance for any help."]
    assert drop_repeated_signatures(comments) == (comments, 0)


def test_a_short_shared_ending_with_an_address_is_a_signature():
    sig = "-- John Carr (jfc@athena.mit.edu)"
    comments = [f"First thought here. {sig}", f"Second thought. {sig}"]
    result, stripped = drop_repeated_signatures(comments)
    assert result == [comments[0], "Second thought."] and stripped == 1


def test_only_the_tail_is_ever_stripped():
    shared = " ".join(f"w{i}" for i in range(TAIL_WORDS + 20))
    comments = [f"newest body {shared}", f"older body {shared}"]
    result, stripped = drop_repeated_signatures(comments)
    assert stripped == 1
    assert result[1].split() == ["older", "body"] + shared.split()[:20]


def test_the_signature_stays_in_the_newest_comment_that_holds_it():
    comments = ["The newest comment has no signature at all, just words.",
                f"Second newest with the signature. {PEPKE}", f"Oldest with it too. {PEPKE}"]
    result, stripped = drop_repeated_signatures(comments)
    assert result == comments[:2] + ["Oldest with it too."] and stripped == 1


def test_a_user_with_one_or_no_comments_is_returned_as_is():
    assert drop_repeated_signatures([]) == ([], 0)
    assert drop_repeated_signatures([f"hi {PEPKE}"]) == ([f"hi {PEPKE}"], 0)
