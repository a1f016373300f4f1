"""Loopline's public Python API for LLM apps: `from loopline.client import LooplineClient`."""
