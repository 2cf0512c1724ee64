"""Built-in tools, registered through the same `register_tools` hook as third-party ones:
calculator, current date and time, search my indexed folders, read a file inside an indexed
folder, and recall long-term memories."""

from __future__ import annotations

import ast
import functools
import math
import operator
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from memory.scanner import skip_reason
from plugins.hookspecs import Tool, ToolContext, ToolError, hookimpl
from plugins.manager import LoaderRegistry

# Work is bounded before it is done: one big-integer power or product runs in C holding the GIL,
# so neither the tool's timeout nor Ctrl-C can stop it once started ((9**999)**9999 took minutes).
MAX_RESULT_DIGITS = 4_000  # under Python's 4,300-digit limit on printing an int
MAX_RESULT_BITS = int(MAX_RESULT_DIGITS * math.log2(10))
MAX_EXPRESSION_CHARS = 500  # a remote model's arguments have no grammar bounding them
MAX_FACTORIAL = 1000
MAX_READ_CHARS = 8_000

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {name: getattr(math, name) for name in (
    "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log", "log10", "log2", "exp", "floor", "ceil",
    "factorial", "radians", "degrees")} | {"abs": abs, "round": round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def calculate(expression: str) -> float | int:
    """Evaluate arithmetic without `eval`: numbers, + - * / // % **, parentheses, and a few math
    functions and constants. Anything else is refused, and so is any step whose result would have
    more than MAX_RESULT_DIGITS digits (estimated before computing it)."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip().replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from exc

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return _bounded(node.value)
        if isinstance(node, ast.Name) and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            _check_size(node.op, left, right)
            return _bounded(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](value(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and not node.keywords):
            arguments = [value(a) for a in node.args]
            if node.func.id == "factorial" and arguments and arguments[0] > MAX_FACTORIAL:
                raise ToolError(f"factorial argument is too large (at most {MAX_FACTORIAL})")
            return _bounded(_FUNCTIONS[node.func.id](*arguments))
        raise ToolError(f"not allowed in a calculation: {ast.unparse(node)!r}")

    try:
        return value(tree)
    except (ArithmeticError, ValueError, TypeError, OverflowError) as exc:
        raise ToolError(f"cannot compute {expression!r}: {exc}") from exc


def _too_large() -> ToolError:
    return ToolError(f"the result would have more than {MAX_RESULT_DIGITS} digits; "
                     "try a smaller calculation, or work with logarithms")


def _bounded(number: Any) -> Any:
    if isinstance(number, int) and number.bit_length() > MAX_RESULT_BITS:
        raise _too_large()
    return number


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse a power or product of integers whose result would be too large, before computing it:
    both operands are already bounded, so only these two operators can grow a number fast."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return  # floats overflow at once (OverflowError) instead of growing
    if isinstance(op, ast.Pow) and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > MAX_RESULT_BITS:
            raise _too_large()
    elif isinstance(op, ast.Mult) and left.bit_length() + right.bit_length() > MAX_RESULT_BITS + 1:
        raise _too_large()


def _calculator(arguments: dict, context: ToolContext) -> str:
    result = calculate(str(arguments.get("expression", "")))
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        result = int(result)
    return str(result)


def _now(arguments: dict, context: ToolContext) -> str:
    now = datetime.now().astimezone()
    return now.strftime("%A %d %B %Y, %H:%M:%S %Z (UTC%z)")


def _search(arguments: dict, context: ToolContext) -> str:
    found = context.search(str(arguments.get("query", "")))
    if not found:
        return "No passages found in the indexed folders."
    return "\n\n".join(f"[{p['location']}]\n{p['text']}" for p in found)


def _recall(arguments: dict, context: ToolContext) -> str:
    found = context.recall(str(arguments.get("query", "")))
    return "\n".join(f"- {m['text']}" for m in found) or "No memories about that."


def _read_file(arguments: dict, context: ToolContext) -> str:
    requested = str(arguments.get("path", ""))
    path = inside_folders(requested, context.folders)
    _check_indexable(requested, path, context.folders)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from exc
    if "\x00" in text[:4096]:
        raise ToolError(f"{path} is a binary file")
    cut = f"\n[… {len(text) - MAX_READ_CHARS} more characters]" if len(text) > MAX_READ_CHARS else ""
    return text[:MAX_READ_CHARS] + cut


def inside_folders(requested: str, folders: list[Path]) -> Path:
    """The file `requested` names, relative to an indexed folder (or absolute inside one), only
    if it really is inside one: no `..` out, no symlink leading out, no other absolute path."""
    if not requested.strip():
        raise ToolError("no path given")
    if ".." in Path(requested).parts:
        raise ToolError(f"{requested!r} uses '..': only files inside indexed folders can be read")
    if not folders:
        raise ToolError("no folder is indexed, so no file can be read")
    given = Path(requested).expanduser()
    for folder in folders:
        root = folder.resolve()
        candidate = given if given.is_absolute() else root / given
        resolved = candidate.resolve()  # follows symlinks: a link out of the folder is refused
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved
        if candidate.is_relative_to(root) and candidate.exists() and not resolved.is_relative_to(root):
            raise ToolError(f"{requested!r} leads outside the indexed folders (a symbolic link)")
    raise ToolError(f"{requested!r} is not a file inside an indexed folder")


def _check_indexable(requested: str, path: Path, folders: list[Path]) -> None:
    """Refuse a file the index leaves out on purpose, by the scanner's own rules: names starting
    with '.' (.env, .git/config), git-ignored files, types no loader reads, binary files. A remote
    model was handed AWS_SECRET_ACCESS_KEY and DB_PASSWORD from a .env that was never indexed.
    Checked as asked and as resolved (`path`), so a link cannot dress one up as the other."""
    given = Path(requested).expanduser()
    for folder in folders:
        root = Path(os.path.abspath(folder))
        asked = Path(os.path.abspath(given if given.is_absolute() else root / given))
        for base, file in ((root.resolve(), path), (root, asked)):
            if file.is_relative_to(base) and (reason := skip_reason(base, file, _kinds().kind_of)):
                raise ToolError(f"{requested!r} is not read: {reason}; read_file reads only what the "
                                "index would index")


@functools.cache
def _kinds() -> LoaderRegistry:
    """The built-in loaders' file types (the tool cannot see the app's plugin manager)."""
    from plugins import loaders

    registry = LoaderRegistry()
    loaders.register_loaders(registry.add)
    return registry


TOOLS = [
    Tool("calculator", "Evaluate an arithmetic expression exactly, e.g. (17 * 23) + sqrt(2).",
         {"type": "object", "properties": {"expression": {"type": "string", "description": "the expression"}},
          "required": ["expression"], "additionalProperties": False}, _calculator),
    Tool("current_datetime", "The current local date and time, with the weekday and time zone.",
         {"type": "object", "properties": {}, "additionalProperties": False}, _now),
    Tool("search_folders", "Search the user's indexed folders; returns passages with file:line.",
         {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"],
          "additionalProperties": False}, _search),
    Tool("read_file", "Read a text file inside one of the user's indexed folders (path relative to it).",
         {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
          "additionalProperties": False}, _read_file),
    Tool("recall_memory", "Look up what the assistant remembers about the user (long-term memory).",
         {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"],
          "additionalProperties": False}, _recall),
]


@hookimpl
def register_tools(register) -> None:  # noqa: ANN001 - the hook's own signature
    for tool in TOOLS:
        register(tool)
