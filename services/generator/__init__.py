"""generator: asks one or more LLMs for candidate responses."""
