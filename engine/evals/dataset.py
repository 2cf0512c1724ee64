"""Eval datasets: JSON Lines, one case per line, with an optional header line first.

    {"dataset": "sample", "folders": ["corpus"], "repeats": 2, "max_tokens": 96}
    {"id": "offsite", "question": "Where is the offsite?", "reference": "In Lisbon.",
     "expected_sources": ["travel.md:3-5"], "checks": {"contains": ["Lisbon"]}}

Every case key is checked: a typo ("refrence") is an error naming the line, not a silently
unscored case. Folders in the header are relative to the dataset file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

CASE_KEYS = {"id", "question", "reference", "expected_sources", "checks", "json_schema", "history", "tags",
             "meta"}
CHECK_KEYS = {"contains", "not_contains", "regex", "json_schema"}
HEADER_KEYS = {"dataset", "folders", "repeats", "max_tokens", "description"}


class DatasetError(ConfigError):
    """An eval dataset that cannot be read or has a malformed case (the message names the line)."""


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    line: int
    reference: str | None = None
    expected_sources: tuple[str, ...] = ()
    checks: dict[str, Any] = field(default_factory=dict)
    json_schema: dict[str, Any] | None = None  # asked as structured output, like `ask --json-schema`
    history: tuple[dict[str, str], ...] = ()  # earlier turns the question follows
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    path: Path
    name: str
    sha256: str
    cases: tuple[Case, ...]
    folders: tuple[Path, ...] = ()
    repeats: int | None = None
    max_tokens: int | None = None


def load_dataset(path: Path) -> Dataset:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise DatasetError(f"The eval dataset {path} cannot be read: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"The eval dataset {path} is not UTF-8 text.") from exc
    header: dict[str, Any] = {}
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{where} is not JSON: {exc}.",
                               hint="Each line holds one JSON object.") from exc
        if not isinstance(item, dict):
            raise DatasetError(f"{where} is not a JSON object.")
        if "question" not in item and "dataset" in item and not cases and not header:
            header = _header(item, where)
            continue
        case = _case(item, where, number)
        if case.id in seen:
            raise DatasetError(f"{where}: the id {case.id!r} is also used on line {seen[case.id]}.",
                               hint="Give every case its own id.")
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise DatasetError(f"The eval dataset {path} has no cases.",
                           hint='Write one JSON object per line, each with a "question".')
    folders = tuple((path.parent / f).resolve() for f in header.get("folders", ()))
    return Dataset(path.resolve(), header.get("dataset") or path.stem, hashlib.sha256(raw).hexdigest(),
                   tuple(cases), folders, header.get("repeats"), header.get("max_tokens"))


def _header(item: dict[str, Any], where: str) -> dict[str, Any]:
    _no_unknown(item, HEADER_KEYS, where, "header")
    folders = item.get("folders", [])
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise DatasetError(f'{where}: "folders" must be a list of paths.')
    for key in ("repeats", "max_tokens"):
        value = item.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise DatasetError(f'{where}: "{key}" must be a whole number of 1 or more.')
    return item


def _case(item: dict[str, Any], where: str, number: int) -> Case:
    _no_unknown(item, CASE_KEYS, where, "case")
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f'{where}: "question" must be non-empty text.')
    reference = item.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise DatasetError(f'{where}: "reference" must be text.')
    sources = _strings(item.get("expected_sources", []), "expected_sources", where)
    checks = item.get("checks", {})
    if not isinstance(checks, dict):
        raise DatasetError(f'{where}: "checks" must be an object.')
    _no_unknown(checks, CHECK_KEYS, where, "check")
    for key in ("contains", "not_contains", "regex"):
        if key in checks:
            checks = {**checks, key: _strings(checks[key], f"checks.{key}", where)}
    for pattern in checks.get("regex", ()):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise DatasetError(f"{where}: the regex {pattern!r} is not valid: {exc}.") from exc
    for schema in (checks.get("json_schema"), item.get("json_schema")):
        if schema is not None:
            _schema(schema, where)
    history = item.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
        for t in history
    ):
        raise DatasetError(f'{where}: "history" must be a list of {{"role": "user"|"assistant", '
                           '"content": "..."}} turns.')
    meta = item.get("meta", {})
    if not isinstance(meta, dict):
        raise DatasetError(f'{where}: "meta" must be an object.')
    case_id = item.get("id")
    if case_id is None:
        case_id = hashlib.sha1(question.encode()).hexdigest()[:8]  # stable while the question is
    elif not isinstance(case_id, (str, int)) or isinstance(case_id, bool):
        raise DatasetError(f'{where}: "id" must be text or a number.')
    return Case(str(case_id), question, number, reference, sources, checks, item.get("json_schema"),
                tuple(history), _strings(item.get("tags", []), "tags", where), meta)


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f'{where}: "{key}" must be text or a list of texts.')
    return tuple(value)


def _schema(schema: Any, where: str) -> None:
    from engine.structured import check_schema

    try:
        check_schema(schema)
    except ConfigError as exc:
        raise DatasetError(f"{where}: {exc}") from exc


def _no_unknown(item: dict[str, Any], known: set[str], where: str, what: str) -> None:
    unknown = sorted(set(item) - known)
    if unknown:
        raise DatasetError(f"{where}: unknown {what} key {', '.join(map(repr, unknown))}.",
                           hint=f"Known keys: {', '.join(sorted(known))}.")
