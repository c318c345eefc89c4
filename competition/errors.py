"""The one error type users see, and turning pydantic's errors into sentences that name the fix."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError


class InputError(ValueError):
    """Bad user input: a file, column, key or value. The CLI prints it and exits with code 2.

    The message names the file / column / key, echoes the bad value and says the fix.
    """


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """Follow ``loc`` through nested pydantic models; the model that owns the last key."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str):
            continue
        field = current.model_fields.get(part)
        if field is None:
            # a discriminated union member name, e.g. ('model', 'encoder', 'lr')
            return None
        current = _first_model(field.annotation)
    return current


def _first_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def explain(err: ValidationError, source: Path | str, model: type[BaseModel]) -> InputError:
    """One readable InputError for every problem pydantic found, listing valid keys for unknown ones."""
    lines = []
    for problem in err.errors():
        loc = tuple(problem["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if problem["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
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
