from __future__ import annotations

import io

import pytest

from tagger.progress import PlainReporter, Reporter, make_reporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(**options):
    clock, stream = FakeClock(), io.StringIO()
    reporter = PlainReporter(stream, clock=clock, ticker=False, **options)
    return reporter, clock, stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_counted_stage_lines_hold_done_total_rate_and_eta():
    reporter, clock, stream = plain(min_gap_s=0)
    with reporter.stage("tagging", total=100) as advance:
        clock.now += 10
        advance(20)  # 20 users in 10 s: 2 users/s, 80 left: 40 s
        clock.now += 10
        advance(80)
    out = lines(stream)
    assert out[0] == "[0:00] tagging: 100 users…"
    assert out[1] == "[0:10] tagging: 20/100 users (20%), 2.00 users/s, ETA 0:40"
    assert out[2] == "[0:20] tagging: 100/100 users (100%), 5.00 users/s, done in 0:20"
    assert len(out) == 3


def test_a_line_every_batch_but_not_more_often_than_the_gap():
    reporter, clock, stream = plain(min_gap_s=5)
    with reporter.stage("embedding", total=10) as advance:
        for _ in range(9):
            clock.now += 1
            advance(1)
        clock.now += 1
        advance(1)
    progress = [line for line in lines(stream) if "/10 texts" in line]
    assert [line.split("] ")[1].split(" texts")[0] for line in progress] == ["embedding: 5/10", "embedding: 10/10"]


def test_ticker_writes_a_line_every_interval_while_nothing_advances():
    reporter, clock, stream = plain(every_s=30)
    with reporter.stage("tagging", total=50) as advance:
        seen = []
        for _ in range(95):  # 95 s of fake time, one tick a second, no work done
            clock.now += 1
            reporter.tick()
            seen.append(len(lines(stream)))
        assert seen[28] == 1 and seen[29] == 2 and seen[59] == 3 and seen[89] == 4 and seen[-1] == 4
        assert lines(stream)[1] == "[0:30] tagging: 0/50 users (0%), 0.00 users/s, ETA unknown"
        advance(50)


def test_uncounted_stages_get_one_line_and_a_failed_stage_none():
    reporter, clock, stream = plain()
    with reporter.stage("load"):
        clock.now += 2
    with reporter.stage("engine start"):
        clock.now += 60
    with pytest.raises(ValueError):
        with reporter.stage("clustering"):
            raise ValueError("boom")
    assert lines(stream) == ["[0:02] load: done in 0:02", "[0:02] engine start…", "[1:02] engine start: done in 1:00"]
    assert set(reporter.timings) == {"load", "engine start", "clustering"}


def test_a_count_that_falls_short_still_ends_with_a_done_line():
    reporter, clock, stream = plain(min_gap_s=100)
    with reporter.stage("embedding", total=10) as advance:
        clock.now += 4
        advance(8)
    assert lines(stream)[-1] == "[0:04] embedding: 8/8 texts (100%), 2.00 texts/s, done in 0:04"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_choice_follows_the_stream_and_quiet():
    assert type(make_reporter(quiet=True, stream=FakeTerminal())) is Reporter
    assert type(make_reporter(quiet=True, stream=io.StringIO())) is Reporter
    assert isinstance(make_reporter(stream=io.StringIO()), PlainReporter)
    assert type(make_reporter(stream=FakeTerminal())).__name__ == "RichReporter"
