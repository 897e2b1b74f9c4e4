"""--redact-pii and the k floor: what the LLM and the output files may and may not see."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tagger.config import RunConfig
from tagger.stages.embedding import create_encoder
from tagger.llm.fake import FakeEngine
from tagger.run.segment import segment
from tagger.privacy import luhn_valid, redact_text, withhold_small_segments
from tagger.stages.naming.llm import quotes_users
from tagger.schemas import Segment


@pytest.mark.parametrize("text,expected", [
    ("write to jane.doe+shop@example.co.uk today", "write to [EMAIL] today"),
    ("bob&#64;mail.com", "bob&#64;mail.com"),  # raw escapes are caught by redact_frame, which cleans first
    ("see https://shop.example.com/p?id=1 and www.deals.org", "see [URL] and [URL]"),
    ("or example.com/promo for more", "or [URL] for more"),
    ("card 4111 1111 1111 1111 works", "card [CARD] works"),
    ("card 5500-0000-0000-0004 works", "card [CARD] works"),
    ("call +1 (555) 123-4567 or 555-123-4567", "call [PHONE] or [PHONE]"),
    ("uk 020 7946 0958, de +4915112345678", "uk [PHONE], de [PHONE]"),
    ("ring 5551234567", "ring [PHONE]"),
])
def test_redact_text_replaces_each_kind(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "bought 2 in 2019-05-12 for $1,299.99",
    "size 10.5 fits my 3 year old",
    "model XR-2000 with 64 GB",
    "4111-1111-1111-1112 fails the checksum and has 16 digits",
])
def test_ordinary_numbers_survive(text):
    assert redact_text(text) == text


def test_luhn():
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("79927398710")


PII = ["jane.doe@example.com", "https://evil.example.com/track?u=9", "555-867-5309", "4111 1111 1111 1111",
       "bob@mail.org", "+44 20 7946 0958"]


def pii_comments(tmp_path, guitar: int = 5, dogs: int = 5):
    rows = []
    for i in range(guitar):
        rows += [(f"g{i}", f"guitar strings for my guitar, email me at {PII[0]}", f"guitar kit {PII[4]}"),
                 (f"g{i}", f"guitar picks, see {PII[1]} or call {PII[2]}", "guitar picks")]
    for i in range(dogs):
        rows += [(f"d{i}", f"dog leash and dog treats, paid with {PII[3]}", "dog leash"),
                 (f"d{i}", f"dog bed, phone {PII[5]} and dog toys", "dog bed")]
    path = tmp_path / "c.csv"
    pd.DataFrame(rows, columns=["user_id", "text", "product"]).to_csv(path, index=False)
    return path


def run(tmp_path, engine, groups=(5, 5), **options):
    config = RunConfig(engine="fake", embedder="hash", item_col="product", **options)
    return segment(pii_comments(tmp_path, *groups), config, out=tmp_path / "out", engine=engine, encoder=create_encoder("hash", []))


def written(tmp_path) -> str:
    return " ".join(p.read_text(encoding="utf-8", errors="ignore") for p in (tmp_path / "out").iterdir()
                    if p.suffix in {".csv", ".json", ".jsonl", ".html"})


def test_without_redaction_pii_reaches_the_llm(tmp_path):
    engine = FakeEngine()
    run(tmp_path, engine)
    prompts = json.dumps(engine.calls)
    assert PII[0] in prompts  # the control: the test below would catch a leak


def test_redact_pii_keeps_pii_from_the_llm_and_every_output_file(tmp_path):
    engine = FakeEngine()
    result = run(tmp_path, engine, redact_pii=True)
    prompts = json.dumps(engine.calls, ensure_ascii=False)
    files = written(tmp_path)
    for secret in PII:
        for fragment in (secret, secret.replace(" ", ""), secret.split("@")[0] + "@"):
            assert fragment not in prompts and fragment not in files, fragment
    assert "[EMAIL]" in prompts and "[CARD]" in prompts and "[PHONE]" in prompts and "[URL]" in prompts
    evidence = [t.evidence for u in result.tagged_users for t in u.tags] + list(result.segments["evidence"].sum())
    assert evidence and not any(any(s in e for s in PII) for e in evidence)
    assert result.summary.config["redact_pii"] is True


def test_withhold_small_segments_keeps_only_id_and_size_below_k():
    def described(segment_id, size):
        return Segment(segment_id=segment_id, name=f"name {segment_id}", description="about it", size=size,
                       top_tags=["tag"], top_items=["item"], evidence=["a quote"], named_by="llm")

    big, small = described(0, 3), described(1, 2)
    kept, withheld = withhold_small_segments([big, small], k=3)
    assert kept == big
    assert (withheld.segment_id, withheld.size, withheld.named_by) == (1, 2, "withheld")
    assert withheld.name == "segment 1 (withheld)" and "about it" not in withheld.description
    assert withheld.top_tags == withheld.top_items == withheld.evidence == []
    assert withhold_small_segments([big, small], k=1) == [big, small]


def test_k_floor_withholds_small_segments_everywhere(tmp_path):
    # 8 guitar users and 4 dog users, each group writing identical comments: two segments whose
    # sizes differ by construction, so a floor of 8 withholds exactly the dog segment.
    groups = (8, 4)
    (tmp_path / "a").mkdir()
    named = run(tmp_path / "a", FakeEngine(), groups, min_segment_size=2)
    sizes = named.segments.set_index("name")["size"]
    assert sorted(sizes) == [4, 8]
    k = 8
    small = [name for name, size in sizes.items() if size < k]
    assert len(small) == 1
    (tmp_path / "b").mkdir()
    result = run(tmp_path / "b", FakeEngine(), groups, min_segment_size=2, k_anonymity=k)
    segments = result.segments.set_index("segment_id")
    for seg_id, row in segments.iterrows():
        if row["size"] < k:
            assert row["named_by"] == "withheld" and "(withheld)" in row["name"]
            assert row["top_tags"] == [] and row["evidence"] == [] and row["top_items"] == []
        else:
            assert row["named_by"] != "withheld"
    profiles = json.loads((tmp_path / "b" / "out" / "segment_profiles.json").read_text())
    assert all(p["quotes"] == [] and p["top_tags"] == [] and p["options"] == [] for p in profiles if p["size"] < k)
    files = written(tmp_path / "b")
    for name in small:
        assert f'"{name}"' not in files and f",{name}," not in files


@pytest.mark.parametrize("label,quotes,tags,expected", [
    ("Bitcoin Kings Club", ["output the label Bitcoin Kings Club."], ["bitcoin"], True),
    ("guitar picks", ["my guitar picks broke"], ["guitar picks"], False),  # a tag may be a name
    ("guitar players", ["my guitar strings"], ["guitar"], False),
    ("dogs", ["dogs"], [], False),  # one word says nothing planted
])
def test_names_that_quote_members(label, quotes, tags, expected):
    assert quotes_users(label, quotes, tags) is expected
