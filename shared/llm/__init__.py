"""LLM plugins (`loopline.llms`): the contract in `base`, the OpenAI-compatible one in `client`."""
