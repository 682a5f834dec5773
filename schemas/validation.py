"""A pydantic ``ValidationError`` as one line of text, the same way wherever it is shown or recorded."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ValidationError


def dotted(location: Sequence[int | str], root: str = "body") -> str:
    """``goal.objective``; the whole value (an empty location) is ``root``."""
    return ".".join(str(part) for part in location) or root


def describe_validation_error(
    error: ValidationError,
    *,
    root: str = "body",
    location: Callable[[Sequence[int | str]], str] | None = None,
    first_only: bool = False,
) -> str:
    """One line naming every invalid field, e.g. ``goal.objective: Field required; channel: ...``.

    ``location`` names a field differently (an environment variable, say); by default it is the dotted
    path, and ``root`` when the whole value is wrong. ``first_only`` keeps the line short for a record
    header or a log: the first problem and how many there are,
    ``goal.objective: Field required (3 error(s))``.
    """
    name = location or (lambda where: dotted(where, root))
    issues = error.errors()
    if first_only:
        first = issues[0]
        return f"{name(first['loc'])}: {first['msg']} ({error.error_count()} error(s))"
    return "; ".join(f"{name(issue['loc'])}: {issue['msg']}" for issue in issues)
