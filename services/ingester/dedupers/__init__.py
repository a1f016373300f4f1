"""Near-duplicate detectors (`loopline.dedupers`). Contract: `base.py`.

The exact-duplicate window (same record id or same normalised content) is not a plugin: it is
`services.ingester.dedup`.
"""
