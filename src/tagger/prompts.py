"""Prompt templates: TOML files in `prompts/` (or a user's override folder) rendered with Jinja2.

A template has `system`, `user` (Jinja2), optional `[[examples]]` (user/assistant pairs sent
as earlier chat turns) and `required` (variables the `user` part must be given).
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from jinja2 import meta

from tagger.errors import ConfigError
from tagger.paths import prompts_dir

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    system: str
    user: str
    examples: tuple[tuple[str, str], ...] = ()
    required: tuple[str, ...] = ()
    description: str = ""
    retry: str = ""
    sha256: str = field(default="", compare=False)

    def retry_message(self, error: str) -> str:
        """The follow-up turn that shows the model why its answer was refused."""
        return _ENV.from_string(self.retry or "{{ error }}").render(error=error).strip()

    def check_variables(self, known: set[str]) -> None:
        """Refuse a template whose `user` part uses a variable the caller never provides."""
        used = meta.find_undeclared_variables(_ENV.parse(self.user)) | meta.find_undeclared_variables(_ENV.parse(self.system))
        unknown = sorted(used - known)
        if unknown:
            raise ConfigError(
                f"prompt {self.path} uses unknown variable(s) {unknown}; available: {', '.join(sorted(known))}"
            )

    def render(self, **variables: object) -> list[dict[str, str]]:
        """Chat messages: system, the examples as earlier turns, then this request's user turn."""
        missing = [name for name in self.required if name not in variables]
        if missing:
            raise ConfigError(f"prompt '{self.name}' needs variables {missing}; pass them when rendering")
        try:
            user = _ENV.from_string(self.user).render(**variables)
            system = _ENV.from_string(self.system).render(**variables)
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"prompt {self.path} uses an unknown variable ({exc.message}); "
                f"available: {', '.join(sorted(variables))}"
            ) from None
        messages = [{"role": "system", "content": system.strip()}]
        for example_user, example_answer in self.examples:
            messages += [{"role": "user", "content": example_user.strip()},
                         {"role": "assistant", "content": example_answer.strip()}]
        messages.append({"role": "user", "content": user.strip()})
        return messages


def search_path(override: Path | str | None = None) -> list[Path]:
    """User overrides first (`--prompts DIR` or `TAGGER_PROMPTS`), then the built-ins."""
    folders = []
    chosen = override or os.environ.get("TAGGER_PROMPTS")
    if chosen:
        folder = Path(chosen).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"prompts folder not found: {folder}; pass an existing folder to --prompts")
        folders.append(folder)
    folders.append(prompts_dir())
    return folders


def data_path(name: str, override: Path | str | None = None) -> Path | None:
    """prompts/data/<name>, first found on the prompt search path (None when none is)."""
    for folder in search_path(override):
        if (Path(folder) / "data" / name).exists():
            return Path(folder) / "data" / name
    return None


def data_file(name: str, override: Path | str | None = None) -> dict:
    """The TOML table of prompts/data/<name> that wins on the search path ({} when none is)."""
    path = data_path(name, override)
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it or delete it to use the shipped one") from None


def available(override: Path | str | None = None) -> dict[str, Path]:
    """Template name → the file that wins (an override shadows the built-in of that name)."""
    found: dict[str, Path] = {}
    for folder in search_path(override):
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def load(name: str, override: Path | str | None = None) -> PromptTemplate:
    templates = available(override)
    if name not in templates:
        raise ConfigError(f"no prompt template named '{name}'; available: {', '.join(sorted(templates))}")
    return parse(templates[name], name)


def parse(path: Path, name: str | None = None) -> PromptTemplate:
    """Read and check a template file; every problem becomes one ConfigError naming the file."""
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"prompt {path} is not valid TOML ({exc}); fix the file") from None
    unknown = set(data) - {"system", "user", "examples", "required", "description", "retry"}
    if unknown:
        raise ConfigError(f"prompt {path} has unknown keys {sorted(unknown)}; allowed: system, user, examples, required, description, retry")
    for key in ("system", "user"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ConfigError(f"prompt {path} needs a non-empty '{key}' string; add it")
    try:
        parsed = _ENV.parse(data["user"])
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt {path} line {exc.lineno} of 'user': {exc.message}; fix the Jinja2 syntax") from None
    required = tuple(data.get("required", ()))
    used = meta.find_undeclared_variables(parsed)
    unused = [name for name in required if name not in used]
    if unused:
        raise ConfigError(f"prompt {path} never uses required variable(s) {unused}; add {{{{ {unused[0]} }}}} to 'user'")
    examples = []
    for i, example in enumerate(data.get("examples", [])):
        if not isinstance(example, dict) or set(example) != {"user", "assistant"}:
            raise ConfigError(f"prompt {path} example {i + 1} must have exactly 'user' and 'assistant'; fix it")
        examples.append((example["user"], example["assistant"]))
    return PromptTemplate(
        name=name or path.stem, path=path, system=data["system"], user=data["user"],
        examples=tuple(examples), required=required, description=data.get("description", ""), retry=data.get("retry", ""),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
