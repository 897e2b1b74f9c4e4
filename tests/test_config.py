from __future__ import annotations

from typing import get_args

import pytest

from tagger.config import EngineName, Period, make_config
from tagger.errors import ConfigError
from tagger.lifecycle.over_time import PERIODS
from tagger.llm.base import ENGINES


def test_the_literal_types_name_what_the_registries_hold():
    assert set(get_args(EngineName)) == set(ENGINES)
    assert set(get_args(Period)) == set(PERIODS)


def test_an_unknown_engine_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="invalid setting engine: Value error, unknown engine 'gpt', choose one of: vllm"):
        make_config(engine="gpt")


@pytest.mark.parametrize("field", ["tag_mode", "period"])
def test_other_choices_are_checked(field):
    with pytest.raises(ConfigError, match=f"invalid setting {field}: Input should be"):
        make_config(**{field: "sometimes"})
