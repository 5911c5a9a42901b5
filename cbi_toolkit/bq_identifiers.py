"""BigQuery identifiers from a spec: validated against BigQuery's naming rules, then backquoted.

Validation is stricter than BigQuery where BigQuery allows odd characters (spaces,
Unicode in table names): a name that passes here can never close a backquote,
start a comment or end a statement, so ``quote`` output is safe to put into SQL.
Values never go into SQL text; they are query parameters.
"""

from __future__ import annotations

import re

# Project ids: 6-30 lowercase letters, digits, hyphens; start with a letter, not end with a
# hyphen; legacy domain-scoped projects carry a ``domain.com:`` prefix.
_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# Datasets: letters, digits, underscores, at most 1024 characters.
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# Tables, views, columns: letters, digits, underscores (and dashes for tables), not
# starting with a dash; BigQuery's further Unicode and space allowances are refused.
_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
# Locations: US, EU, us-central1, europe-west3 ...
_LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,63}$")

_RULES = {
    "project": (_PROJECT, "6-30 lowercase letters, digits and hyphens, starting with a letter"),
    "dataset": (_DATASET, "letters, digits and underscores"),
    "table": (_TABLE, "letters, digits, underscores and dashes"),
    "view": (_TABLE, "letters, digits, underscores and dashes"),
    "column": (_COLUMN, "letters, digits and underscores, not starting with a digit"),
    "location": (_LOCATION, "a BigQuery location such as US, EU or us-central1"),
}


def check(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid BigQuery ``kind`` name, else raise ValueError."""
    pattern, rule = _RULES[kind]
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} is not a valid BigQuery {kind} name ({rule})")
    return name


def quote(*parts: str) -> str:
    """Backquote a validated path: ``quote("p", "d", "t")`` -> ```p`.`d`.`t```."""
    for part in parts:
        if not part or "`" in part or "\\" in part:
            raise ValueError(f"identifier {part!r} cannot be quoted")
    return ".".join(f"`{part}`" for part in parts)


def split_table(path: str, default_project: str) -> tuple[str, str, str]:
    """``dataset.table`` or ``project.dataset.table`` -> (project, dataset, table), validated."""
    parts = path.split(".") if isinstance(path, str) else []
    if len(parts) == 2:
        parts = [default_project, *parts]
    elif len(parts) > 3 and ":" in path:  # domain-scoped project with dots: a.com:p.d.t
        parts = [".".join(parts[:-2]), *parts[-2:]]
    if len(parts) != 3:
        raise ValueError(f"table {path!r} must be dataset.table or project.dataset.table")
    project, dataset, table = parts
    return check("project", project), check("dataset", dataset), check("table", table)
