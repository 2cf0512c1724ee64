"""A built-in observer: each answer's trace sent to an OpenTelemetry collector (OTLP over HTTP).

Registered only when `otlp_endpoint` is set; needs `pip install 'assistant[otel]'`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.errors import ConfigError
from plugins.hookspecs import hookimpl


class OtlpExporter:
    def __init__(self, endpoint: str) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise ConfigError(
                "otlp_endpoint is set, but the OpenTelemetry exporter is not installed.",
                hint="pip install 'assistant[otel]', or unset otlp_endpoint.",
            ) from exc
        self.provider = TracerProvider(resource=Resource.create({"service.name": "assistant"}))
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("assistant")

    @hookimpl
    def on_response_logged(self, response: dict, spans: list[dict]) -> None:
        from opentelemetry import trace

        ended = datetime.fromisoformat(response["created_at"]).timestamp()
        origin = int((ended - (response["total_ms"] or 0) / 1000) * 1e9)
        root = self.tracer.start_span("answer", start_time=origin, attributes=_attributes({
            "assistant.response_id": response["id"], "assistant.trace_id": response["trace_id"],
            "assistant.status": response["status"], "assistant.backend": response["backend"],
            "gen_ai.request.model": response["model"], "gen_ai.usage.input_tokens": response["input_tokens"],
            "gen_ai.usage.output_tokens": response["output_tokens"], "assistant.cost_usd": response["cost"],
        }))
        parents = {None: root}
        for s in sorted(spans, key=lambda s: s["parent"] is not None):  # parents before children
            context = trace.set_span_in_context(parents.get(s["parent"], root))
            start = origin + int(s["start_ms"] * 1e6)
            span = self.tracer.start_span(s["name"], context=context, start_time=start,
                                          attributes=_attributes(s["attrs"] or {}))
            span.end(end_time=start + int(s["duration_ms"] * 1e6))
            if s["parent"] is None:
                parents[s["name"]] = span
        root.end(end_time=origin + int((response["total_ms"] or 0) * 1e6))
        self.provider.force_flush(timeout_millis=5000)


def _attributes(values: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes text, numbers, booleans and lists of them; None is left out."""
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        elif isinstance(value, (str, int, float, bool)):
            out[key] = value
        else:
            out[key] = str(value)
    return out
