"""Helpers shared by the tests: in-process fakes of the servers Loopline talks to."""
