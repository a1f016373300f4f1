"""Traces from OpenTelemetry-instrumented apps: `wire` decodes OTLP/HTTP export requests,
`genai` turns their LLM spans (GenAI semantic conventions) into raw records."""
