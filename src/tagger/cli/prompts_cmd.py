"""`tagger prompts list|show|render|check`: inspect and test the prompt templates."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tagger.cli.options import input_options

# Which stage renders each template tagger uses, and the variables that stage provides.
ROLES = {"tag": "tagging (--tag-mode grounded)", "tag-free": "tagging (--tag-mode free)", "name": "segment naming"}
PROMPTS_OPTION = click.option("--prompts", type=click.Path(path_type=Path), envvar="TAGGER_PROMPTS",
                              help="folder of templates overriding the built-ins [TAGGER_PROMPTS]")


@click.group("prompts")
def command() -> None:
    """List, show, render and check the prompt templates (built-ins and your overrides)."""


@command.command("list")
@PROMPTS_OPTION
def list_command(prompts) -> None:
    """Every template name, the file that wins, and what uses it."""
    from tagger import prompts as prompt_files
    from tagger.paths import prompts_dir

    builtin = prompts_dir()
    for name, path in prompt_files.available(prompts).items():
        source = "built-in" if path.parent == builtin else (
            "override of built-in" if (builtin / path.name).exists() else "override")
        role = ROLES.get(name, "not used by tagger")
        description = _description(path)
        click.echo(f"{name:<10} {source:<21} {role:<30} {path}")
        if description:
            click.echo(f"{'':<10} {description}")


@command.command("show")
@click.argument("name")
@PROMPTS_OPTION
def show_command(name, prompts) -> None:
    """Print the template file that NAME resolves to."""
    from tagger import prompts as prompt_files

    template = prompt_files.load(name, prompts)
    click.echo(f"# {template.path}  (sha256 {template.sha256[:12]})")
    click.echo(template.path.read_text(encoding="utf-8").rstrip("\n"))


@command.command("render")
@click.argument("name")
@click.option("--data", "data_file", help="comments file (CSV, Parquet, JSONL) or 'demo'; for tag templates")
@click.option("--user", "user_id", metavar="ID", help="the user whose tagging request to render")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), help="a run folder: its settings are used; needed for 'name'")
@click.option("--segment", "segment_ref", metavar="ID|NAME", help="the segment whose naming request to render (with --run)")
@PROMPTS_OPTION
@input_options()
@click.option("--engine", type=click.Choice(["vllm", "openai", "fake"]), envvar="TAGGER_ENGINE", help="engine whose tokenizer counts the budget [vllm]")
@click.option("--model", envvar="TAGGER_MODEL", help="model whose tokenizer counts the budget [embedded]")
@click.option("--doc-tokens", type=int, help="token budget of one user's comments [384]")
@click.option("--redact-pii", is_flag=True, default=None, help="as in `segment --redact-pii`")
@click.option("--json", "as_json", is_flag=True, help="print {messages, schema} as JSON")
def render_command(name, data_file, user_id, run_dir, segment_ref, prompts, as_json, **options) -> None:
    """Print exactly the chat messages (and JSON schema) the LLM receives for one user or segment.

    The request is built by the pipeline's own code (same cleaning, prompt filling and candidate
    phrases over all users of the file) and captured where it would be sent to the engine.
    """
    from tagger.cli.prompt_render import render_naming_request, render_tag_request

    if name == "name":
        if run_dir is None or segment_ref is None:
            raise click.UsageError("rendering 'name' needs --run RUN_DIR and --segment ID")
        request = render_naming_request(run_dir, segment_ref, prompts)
    else:
        if data_file is None or user_id is None:
            raise click.UsageError(f"rendering '{name}' needs --data FILE and --user ID")
        request = render_tag_request(name, data_file, user_id, prompts, run_dir, options)
    if as_json:
        click.echo(json.dumps(request, indent=2, ensure_ascii=False))
        return
    for message in request["messages"]:
        click.echo(f"--- {message['role']} ---")
        click.echo(message["content"])
    click.echo("--- JSON schema the answer is constrained to ---")
    click.echo(json.dumps(request["schema"], ensure_ascii=False))


@command.command("check")
@click.argument("names", nargs=-1)
@PROMPTS_OPTION
def check_command(names, prompts) -> None:
    """Check templates (all by default): TOML and Jinja2 syntax, required and unknown variables.

    Prints one line per problem and exits non-zero if there is any.
    """
    from tagger import prompts as prompt_files
    from tagger.errors import ConfigError
    from tagger.cli.prompt_render import check_template

    found = prompt_files.available(prompts)
    problems = []
    for name in names or sorted(found):
        if name not in found:
            problems.append(f"{name}: no such template; available: {', '.join(sorted(found))}")
            continue
        problems += check_template(name, found[name])
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in prompt templates (listed above); fix them and run `tagger prompts check` again")
    click.echo(f"ok: {len(names or found)} template(s) checked")


def _description(path: Path) -> str:
    import tomllib

    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8")).get("description", ""))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return "(cannot be parsed: run `tagger prompts check`)"
