"""``comp new 050 --template minilm``: start an experiment file from a packaged template."""

from __future__ import annotations

from typing import Annotated

import typer

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace


@handle_errors
def command(
    exp: Annotated[str, typer.Argument(help="new experiment id, e.g. 050")],
    template: Annotated[str | None, typer.Option(
        "--template", "-t", help="tfidf, minilm, lgbm, embed or scratch (default: tfidf with text columns, "
                                 "lgbm without)")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing experiment file")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Create experiments/<exp>.yaml from a template; edit what differs, then `comp train exp=<exp>`."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition import artifacts
    from competition.config import load_config, templates
    from competition.errors import InputError
    from competition.spec import load_spec

    ws = workspace(ws_path)
    spec = load_spec(ws.spec_file)
    template = template or ("tfidf" if spec.text else "lgbm")
    if template not in templates():
        raise InputError(f"--template {template!r}: valid templates are {', '.join(templates())}")
    if template != "lgbm" and not spec.text:
        raise InputError(f"--template {template}: reads text, but {ws.spec_file} lists no text columns "
                         f"(text: []); use --template lgbm on the feature columns {spec.features}, or list "
                         "the text columns under `text:`")
    if template == "lgbm" and not spec.features:
        raise InputError(f"--template lgbm: needs feature columns, but {ws.spec_file} lists none "
                         f"(features: []); list them under `features:`, or use a text template such as tfidf")
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
