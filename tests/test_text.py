from __future__ import annotations

from tagger.text import han_runs, has_cjk, has_han, mostly_cjk


def test_han_and_kana():
    assert has_han("洗发水") and has_han("\uf900") and not has_han("カメラ") and not has_han("camera")
    assert has_cjk("カメラ") and has_cjk("洗发水") and not has_cjk("카메라") and not has_cjk("camera")


def test_han_runs_split_at_other_characters():
    assert han_runs("买了洗发水, and 蒙牛!") == ["买了洗发水", "蒙牛"]


def test_mostly_cjk_counts_texts_not_characters():
    assert mostly_cjk(["好", "好 good", "good"]) and not mostly_cjk(["好", "good"]) and not mostly_cjk([])
