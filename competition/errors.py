"""The one error type users see, the warning about degraded data, and turning pydantic's errors into sentences
that name the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # pydantic is imported where a config is validated, not by every error
    from pydantic import BaseModel, ValidationError


class DataWarning(UserWarning):
    """Usable but degraded input (duplicates with conflicting labels, mojibake, rare classes)."""


INTERRUPTED = "interrupted: finished artifacts are kept; run the command again to resume"


class InputError(ValueError):
    """Bad user input: a file, column, key or value. The CLI prints it and exits with code 2.

    The message names the file / column / key, echoes the bad value and says the fix. A library
    function speaks of its own arguments, never of a command's flags: the message names an
    argument as a placeholder, ``{force}``, and ``words`` says how a Python caller writes it
    (``force="force=True"``). ``str(err)`` reads so; the command that took the value as a flag
    puts the flag there instead (:meth:`phrased`, e.g. ``{"force": "--force"}``).

    >>> err = InputError("a run named s01 exists: pick another {name}, or {force} to replace it",
    ...                  name="name", force="force=True")
    >>> str(err)
    'a run named s01 exists: pick another name, or force=True to replace it'
    >>> err.phrased({"name": "--name", "force": "--force"})
    'a run named s01 exists: pick another --name, or --force to replace it'
    """

    def __init__(self, message: str, **words: str):
        self.template, self.words = message, words
        super().__init__(self.phrased())

    def phrased(self, flags: dict[str, str] | None = None) -> str:
        """The message with each argument it names written as ``flags`` says (a command's flags),
        the others as a Python caller writes them. Only the placeholders of ``words`` are filled:
        other braces in the message (a YAML list, a dict) stay as they are."""
        if not self.words:
            return self.template
        flags = flags or {}

        def fill(match: re.Match) -> str:
            arg = match[1]
            return flags.get(arg, self.words[arg]) if arg in self.words else match[0]

        return re.sub(r"\{(\w+)\}", fill, self.template)


def _walk(model: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, tuple]:
    """Follow ``loc`` through nested pydantic models: the model that owns the last key, and the key
    path as the user wrote it. pydantic names the member of a discriminated union in the path
    (``('model', 'lgbm', 'lr')``); the user wrote ``model.lr`` on an lgbm experiment."""
    current: type[BaseModel] | None = model
    members: list[type[BaseModel]] = []
    path = []
    for part in loc[:-1]:
        if not isinstance(part, str):
            path.append(part)
            continue
        tagged = [m for m in members if _tag(m) == part]
        if tagged:                       # the union member's tag: select it, keep it out of the path
            current, members = tagged[0], []
            continue
        path.append(part)
        field = current.model_fields.get(part) if current is not None else None
        if field is None:
            return None, (*path, loc[-1])
        members = _models(field.annotation)
        current = members[0] if len(members) == 1 else None
    return current, (*path, loc[-1])


def _tag(model: type[BaseModel]) -> str | None:
    """The value of a union member's ``family`` literal (its discriminator), if it has one."""
    field = model.model_fields.get("family")
    return field.default if field is not None else None


def _models(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation allows: one for a plain field, several for a union."""
    # pydantic: only where a config is validated, not by every error
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) or () for m in _models(arg)]


def explain(err: ValidationError, source: Path | str, model: type[BaseModel]) -> InputError:
    """One readable InputError for every problem pydantic found, listing valid keys for unknown ones."""
    lines = []
    for problem in err.errors():
        owner, loc = _walk(model, tuple(problem["loc"])) if problem["loc"] else (model, ())
        key = ".".join(str(p) for p in loc) or "(top level)"
        if problem["type"] == "extra_forbidden":
            valid = sorted(owner.model_fields) if owner is not None else []
            hint = f"; valid keys here: {', '.join(valid)}" if valid else ""
            lines.append(f"unknown key '{key}'{hint}")
        elif problem["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            got = problem.get("input")
            got_txt = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            lines.append(f"'{key}': {problem['msg']}{got_txt}")
    body = "\n  - ".join(lines)
    return InputError(f"{source}: invalid configuration\n  - {body}")
