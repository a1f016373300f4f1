"""Bot annotators: simulated people for demos, tests and benchmarks (never for real data).

Real Argilla annotator users (`accounts`) answer a flow's pending records through Argilla's
REST API as the UI does (`runner`), with a policy plugin (`loopline.annotators`, contract in
`base`) making up each answer: `agree` (the judge's suggestions, with some disagreement and
discards), `random`, `run-tests` (runs code responses against the record's tests).
"""
