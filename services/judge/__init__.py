"""judge: scores responses with an LLM-as-judge rubric."""
