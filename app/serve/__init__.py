"""`assistant serve`: the engine behind an OpenAI-compatible HTTP API (Starlette on uvicorn).

Every chat request is a question asked through `Engine.ask`, as if typed in the chat app: the
route and its fallbacks, the cache, the guardrails and one response row with its timings. The
model id picks what the answer may use: `assistant` answers from the model alone; `assistant-rag`
also searches the indexed folders, recalls long-term memories and may call tools, and the
response carries the passages it used under `sources`. (The body field `"rag": true/false`
overrides the model id.)

One model serves many clients through a bounded queue: past `concurrency` running and `queue`
waiting requests, the answer is 429 with `Retry-After`. A client that disconnects cancels its
generation (the engine records the row as cancelled). Bound to a loopback address by default;
any other address needs a token, sent as `Authorization: Bearer TOKEN`.
"""

from app.serve.http import ServeOptions, is_loopback
from app.serve.routes import bind, create_app, serve

__all__ = ["ServeOptions", "bind", "create_app", "is_loopback", "serve"]
