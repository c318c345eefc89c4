"""``comp new 050 --template minilm``: start an experiment file from a packaged template."""

from __future__ import annotations

from typing import Annotated

import typer

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace


@handle_errors
def command(
    exp: Annotated[str, typer.Argument(help="new experiment id, e.g. 050")],
    template: Annotated[str, typer.Option("--template", "-t", help="tfidf, minilm, lgbm, embed or scratch")] = "tfidf",
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing experiment file")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Create experiments/<exp>.yaml from a template; edit what differs, then `comp train exp=<exp>`."""
    from competition import artifacts
    from competition.config import load_config, templates
    from competition.errors import InputError

    ws = workspace(ws_path)
    if template not in templates():
        raise InputError(f"--template {template!r}: valid templates are {', '.join(templates())}")
    path = ws.experiment_file(exp)
    if path.exists() and not force:
        raise InputError(f"{path} exists; pick another id or pass --force to overwrite it")
    text = f"# experiment {exp}: starts from the {template} template; add only what differs.\ntemplate: {template}\n"
    artifacts.write_text(path, text)
    try:
        load_config(ws, exp)
    except InputError:
        path.unlink()
        raise
    console.print(f"wrote {path} (template {template}); train it with `comp train exp={exp} --fold all`")
