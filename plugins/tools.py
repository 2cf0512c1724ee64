"""Built-in tools, registered through the same `register_tools` hook as third-party ones:
calculator, current date and time, search my indexed folders, read a file inside an indexed
folder, and recall long-term memories."""

from __future__ import annotations

import ast
import math
import operator
from datetime import datetime
from pathlib import Path
from typing import Any

from plugins.hookspecs import Tool, ToolContext, ToolError, hookimpl

MAX_EXPONENT = 10_000  # 9 ** 10_000_000 would take minutes and gigabytes
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
    functions and constants. Anything else is refused."""
    try:
        tree = ast.parse(expression.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from exc

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.Name) and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
                raise ToolError(f"exponent {right} is too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](value(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and not node.keywords):
            if node.func.id == "factorial" and value(node.args[0]) > 1000:
                raise ToolError("factorial argument is too large")
            return _FUNCTIONS[node.func.id](*(value(a) for a in node.args))
        raise ToolError(f"not allowed in a calculation: {ast.unparse(node)!r}")

    try:
        return value(tree)
    except (ArithmeticError, ValueError, TypeError, OverflowError) as exc:
        raise ToolError(f"cannot compute {expression!r}: {exc}") from exc


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
    path = inside_folders(str(arguments.get("path", "")), context.folders)
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
