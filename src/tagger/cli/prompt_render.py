"""Render the exact request the LLM receives for one user or segment, and check templates.

The request is not rebuilt here: the pipeline's own load, tagging and naming code runs with an
engine that records what it is sent, so what is shown cannot drift from what is asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from tagger import prompts as prompt_files
from tagger.errors import ConfigError, InputError
from tagger.llm.base import Completion, GenerationParams

MODES_BY_TEMPLATE = {"tag": "grounded", "tag-free": "free"}


class CapturingEngine:
    """Records every batch it is sent and answers nothing (each request then 'fails')."""

    def __init__(self, model_id: str = "render-only") -> None:
        self.model_id = model_id  # a run's model id: the answers it cached are used, the rest recorded
        self.calls: list[tuple[list, list]] = []

    def generate(self, chats, *, schemas, params) -> list[Completion]:
        self.calls.append((list(chats), list(schemas)))
        return [Completion(text="", error="render only") for _ in chats]

    def close(self) -> None:
        pass


def render_tag_request(name: str, data_file: str, user_id: str, prompts: Path | None = None,
                       run_dir: Path | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """{messages, schema} of the tagging request for `user_id` in `data_file`."""
    from tagger.cache import ResultCache
    from tagger.config import make_config
    from tagger.paths import demo_file
    from tagger.llm.models import engine_model, prompt_counter
    from tagger.pipeline import fit_candidates, load_documents
    from tagger.run.segment import previous_candidates
    from tagger.stages.excerpts import PromptFiller
    from tagger.stages.tagging import TagOptions, tag_users

    if name not in MODES_BY_TEMPLATE:
        raise ConfigError(f"cannot render '{name}' for a user; tagging uses: {', '.join(MODES_BY_TEMPLATE)} "
                          "(render 'name' with --run and --segment)")
    values: dict[str, Any] = {}
    if run_dir is not None:
        from tagger.run.load import load_run

        values.update(load_run(run_dir).summary.config)
    if data_file == "demo":
        data_file = str(demo_file())
        values.setdefault("time_col", "timestamp_ms")
        values.setdefault("item_col", "product")
    values.update({k: v for k, v in (options or {}).items() if v is not None})
    values["tag_mode"] = MODES_BY_TEMPLATE[name]
    if prompts is not None:
        values["prompts"] = prompts
    config = make_config(**values)
    template = prompt_files.load(name, config.prompts)
    documents, _ = load_documents(Path(data_file), config)
    index = {d.user_id: i for i, d in enumerate(documents)}
    if str(user_id) not in index:
        sample = ", ".join(d.user_id for d in documents[:3])
        raise InputError(f"no user '{user_id}' in {data_file} (after cleaning and --max-users); e.g. {sample}")
    engine = CapturingEngine()
    params = GenerationParams(max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed)
    previous = previous_candidates(config) if config.tag_mode == "grounded" else None
    extractor = fit_candidates(config, [d.text for d in documents], previous)
    filler = PromptFiller(prompt_counter(config.engine, engine_model(config.engine, config.model)), config.doc_tokens)
    options = TagOptions(params, mode=config.tag_mode, batch_size=max(len(documents), 1), extractor=extractor,
                         filler=filler)
    tagged = tag_users(documents, engine, template, options, cache=ResultCache(None))
    askable = [i for i, user in enumerate(tagged) if user.attempts > 0]
    at = index[str(user_id)]
    if at not in askable:
        raise InputError(f"user '{user_id}' gets no tagging request: {tagged[at].error}")
    chats, schemas = engine.calls[0]
    k = askable.index(at)
    return {"template": str(template.path), "messages": chats[k], "schema": schemas[k]}


def render_naming_request(run_dir: Path, segment_ref: str, prompts: Path | None = None) -> dict[str, Any]:
    """{messages, schema} of the naming request for one segment of a run, as `rename` sends it:
    the run's profiles named by the same `name_tree` with the same settings, its cached answers
    read (so the levels above see the names the run gave), and the request for that segment kept."""
    from tagger.run.context import RunContext, run_config
    from tagger.run.load import load_run
    from tagger.stages.naming import NamingSettings, name_tree

    run = load_run(run_dir)
    seg = int(run.find_segment(segment_ref).segment_id)
    config = run_config(run.path, run.summary)
    template = prompt_files.load("name", prompts or config.prompts)
    settings = NamingSettings.from_config(config, language=run.summary.language)
    if not settings.use_llm:
        raise InputError(f"segment {seg} is named without asking the LLM: the embedded model does not name "
                         "Chinese segments (their best-ranked name is taken)")
    engine = CapturingEngine(run.summary.model)
    requests: list = []
    with RunContext(config, engine=engine) as ctx:
        name_tree(run.profiles, engine, template, settings, cache=ctx.cache, requests=requests)
    found = [r for r in requests if r.segment_id == seg]
    if not found:
        raise InputError(f"segment {seg} gets no naming request: no name of its own is free to offer")
    return {"template": str(template.path), "messages": found[-1].messages, "schema": found[-1].schema}


def check_template(name: str, path: Path) -> list[str]:
    """Problems with one template file, one line each (empty when it is fine)."""
    from tagger.stages.naming import NAME_VARIABLES
    from tagger.stages.tagging import TAG_VARIABLES

    try:
        template = prompt_files.parse(path, name)
    except ConfigError as exc:
        return [f"{name}: {exc}"]
    known = {"tag": TAG_VARIABLES, "tag-free": TAG_VARIABLES, "name": NAME_VARIABLES}.get(name)
    if known is None:
        return []  # not rendered by tagger: nothing to check its variables against
    problems = []
    unprovided = sorted(set(template.required) - known)
    if unprovided:
        problems.append(f"{name}: {path} requires {unprovided}, which tagger never provides; "
                        f"available: {', '.join(sorted(known))}")
    try:
        template.check_variables(known)
    except ConfigError as exc:
        problems.append(f"{name}: {exc}")
    if problems:
        return problems
    sample = {var: [] if var in {"comments", "candidates", "items", "tags", "quotes", "neighbour_tags"} else ""
              for var in known}
    try:
        template.render(**sample)
    except ConfigError as exc:
        problems.append(f"{name}: {exc}")
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:  # e.g. a filter on the wrong type
        problems.append(f"{name}: {path} fails to render with empty inputs ({type(exc).__name__}: {exc}); fix the template")
    return problems
