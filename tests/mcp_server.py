"""A small MCP server over stdio, for the tests: `add` (marked read-only) and `env_probe` (which
environment variables it can see)."""

import os

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("test")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def env_probe() -> str:
    """The names of the environment variables this server can see."""
    return ",".join(sorted(os.environ))


if __name__ == "__main__":
    server.run("stdio")
