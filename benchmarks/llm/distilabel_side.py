"""The distilabel 1.5.3 side of the LLM benchmark: TextGeneration (2 generations) + UltraFeedback.

Run by the benchmark virtualenv's interpreter (`.loopline/bench/distilabel`), never by the
project's: it imports distilabel and the standard library only. Reads a JSON job from the file
named on the command line and prints one JSON line with the wall time of `pipeline.run` and how
many rows came out (with a rating, and the generated texts):

    python distilabel_side.py job.json

job: {"base_url", "model", "instructions": [...], "temperature", "max_tokens",
      "judge_max_tokens", "generations", "timeout_s", "cache_dir"}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def run(job: dict[str, Any]) -> dict[str, Any]:
    from distilabel.models.llms import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration, UltraFeedback

    def llm(max_tokens: int, temperature: float) -> OpenAILLM:
        return OpenAILLM(
            base_url=job["base_url"],
            api_key="none",
            model=job["model"],
            timeout=job["timeout_s"],
            generation_kwargs={"max_new_tokens": max_tokens, "temperature": temperature},
        )

    rows = [{"instruction": text} for text in job["instructions"]]
    with Pipeline(name="loopline-llm-bench", cache_dir=job["cache_dir"]) as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=len(rows))
        generate = TextGeneration(
            llm=llm(job["max_tokens"], job["temperature"]),
            num_generations=job["generations"],
            group_generations=True,
            input_batch_size=len(rows),
        )
        rate = UltraFeedback(
            # The same judge temperature as Loopline's judge (0 by default).
            llm=llm(job["judge_max_tokens"], job["judge_temperature"]),
            aspect="overall-rating",
            input_mappings={"generations": "generation"},
            input_batch_size=len(rows),
        )
        load >> generate >> rate

    started = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    wall_s = time.perf_counter() - started

    out = distiset["default"]["train"]
    rated = sum(
        1
        for ratings in out["ratings"]
        if ratings and all(isinstance(r, int | float) for r in ratings)
    )
    texts = [g for gens in out["generation"] for g in gens or [] if g]
    return {
        "wall_s": wall_s,
        "rows": len(out),
        "rated_rows": rated,
        "generations": len(texts),
        "generation_texts": texts,
    }


def main() -> int:
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    result = run(job)
    print("DISTILABEL_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
