"""What the queries of docs/queries.sql refer to, checked against table schemas.

Athena does not run offline, so this reads the SQL instead: the tables each query names
(``database.table AS alias``), the CTEs it defines, every ``alias.column`` and every bare word.
With the house style of docs/queries.sql (every table aliased, every column qualified) a bare
word can only be a keyword, a function, a type, an alias, a CTE or an output name given with
``AS``; anything else is reported, so an unqualified or misspelt column cannot slip through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

KEYWORDS = {
    "select", "from", "where", "join", "inner", "left", "right", "full", "outer", "cross", "on", "and", "or",
    "not", "as", "with", "group", "by", "order", "asc", "desc", "limit", "having", "case", "when", "then",
    "else", "end", "over", "partition", "distinct", "in", "is", "null", "between", "like", "union", "all",
    "cast", "true", "false", "interval", "exists", "using", "rows", "range", "preceding", "following",
    "unbounded", "current", "row", "filter", "nulls", "first", "last",
}
TYPES = {"double", "bigint", "integer", "int", "varchar", "date", "timestamp", "decimal", "real", "boolean"}

_COMMENT = re.compile(r"--[^\n]*")
_STRING = re.compile(r"'(?:[^']|'')*'")
_NAME = re.compile(r"--\s*name:\s*(\w+)")


@dataclass
class Query:
    name: str
    sql: str  # comments removed, string literals kept
    problems: list[str] = field(default_factory=list)


def split_queries(text: str) -> list[Query]:
    """The statements of the file, each named by the ``-- name:`` comment before it (comments
    may hold semicolons: they are removed before the text is split)."""
    marked = _COMMENT.sub(lambda m: f"\x00{n.group(1)}\x00" if (n := _NAME.match(m.group(0))) else "", text)
    queries, name = [], None
    for chunk in marked.split(";"):
        names = re.findall(r"\x00(\w+)\x00", chunk)
        if names:
            name = names[-1]
        sql = re.sub(r"\x00\w+\x00", "", chunk).strip()
        if sql:
            queries.append(Query(name or f"query {len(queries) + 1}", sql))
            name = None
    return queries


def _balanced(text: str, start: int) -> str:
    """The text inside the parenthesis opening at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i]
    raise ValueError("unbalanced parentheses")


def _top_level_select_items(body: str) -> list[str]:
    match = re.search(r"\bselect\b(.*?)\bfrom\b", body, re.IGNORECASE | re.DOTALL)
    if not match:
        return []
    items, depth, current = [], 0, ""
    for ch in match.group(1):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return items + [current]


def _cte_columns(body: str) -> set[str]:
    columns = set()
    for item in _top_level_select_items(body):
        item = item.strip()
        named = re.search(r"\bas\s+(\w+)\s*$", item, re.IGNORECASE)
        qualified = re.fullmatch(r"\w+\.(\w+)", item)
        if named:
            columns.add(named.group(1).lower())
        elif qualified:
            columns.add(qualified.group(1).lower())
    return columns


def check_query(query: Query, database: str, schemas: Mapping[str, set[str]]) -> list[tuple[str, str, str]]:
    """Fill ``query.problems``; return the (table, column, value) of each ``alias.column = 'value'``
    (and ``IN ('value', ...)``) so the caller can check the values against the data."""
    sql = query.sql
    literals = []
    for match in re.finditer(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\s*(?:=|<>|!=)\s*('(?:[^']|'')*')", sql):
        literals.append((match.group(1).lower(), match.group(2).lower(), match.group(3)[1:-1].replace("''", "'")))
    code = _STRING.sub("''", sql)

    ctes: dict[str, set[str]] = {}
    for match in re.finditer(r"(?:\bwith\b|,)\s*(\w+)\s+as\s*\(", code, re.IGNORECASE):
        ctes[match.group(1).lower()] = _cte_columns(_balanced(code, match.end() - 1))

    aliases: dict[str, str] = {}  # alias -> table name or CTE name
    tables: set[str] = set()
    for match in re.finditer(rf"\b{database}\.(\w+)(?:\s+as)?\s+(\w+)", code, re.IGNORECASE):
        table, alias = match.group(1).lower(), match.group(2).lower()
        tables.add(table)
        if table not in schemas:
            query.problems.append(f"no table {database}.{table}")
        if alias in KEYWORDS:
            query.problems.append(f"{database}.{table} has no alias")
        elif aliases.get(alias, table) != table:
            query.problems.append(f"alias {alias} names both {aliases[alias]} and {table}")
        aliases[alias] = table
    for match in re.finditer(r"\b(?:from|join)\s+(\w+)(?:\s+as)?\s+(\w+)", code, re.IGNORECASE):
        source, alias = match.group(1).lower(), match.group(2).lower()
        if source in ctes and alias not in KEYWORDS:
            aliases[alias] = source
    other_databases = {m.lower() for m in re.findall(r"\b(\w+)\.\w+\.\w+", code)}
    if other_databases:
        query.problems.append(f"three-part names {sorted(other_databases)}: only {database}.<table>")

    for match in re.finditer(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b", code):
        qualifier, column = match.group(1).lower(), match.group(2).lower()
        if qualifier == database:
            continue
        source = aliases.get(qualifier)
        if source is None:
            query.problems.append(f"{qualifier}.{column}: {qualifier} is no alias of this query")
        elif source in ctes:
            if column not in ctes[source]:
                query.problems.append(f"{qualifier}.{column}: CTE {source} has no column {column}")
        elif source in schemas and column not in schemas[source]:
            query.problems.append(f"{qualifier}.{column}: {database}.{source} has no column {column}")

    bare = re.sub(rf"\b{database}\.\w+|\b\w+\.\w+\b", " ", code)
    outputs = {m.lower() for m in re.findall(r"\bas\s+(\w+)", code, re.IGNORECASE)}
    known = KEYWORDS | TYPES | set(aliases) | set(ctes) | outputs
    for match in re.finditer(r"\b([A-Za-z_]\w*)\b(\s*\()?", bare):
        word, call = match.group(1).lower(), match.group(2)
        if call or word in known:
            continue
        query.problems.append(f"bare word {word!r}: not a keyword, alias or output name (qualify columns)")
    return [(aliases[a], c, v) for a, c, v in literals if aliases.get(a) in tables]
