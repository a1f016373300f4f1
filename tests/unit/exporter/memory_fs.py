"""The in-memory filesystem the exporter's URL tests export to (fsspec's `memory://`, one
instance per process)."""

from fsspec.implementations.memory import MemoryFileSystem

MEMORY = MemoryFileSystem()
