"""Redactors (`loopline.redactors`): mask sensitive text before anything else sees it.
Contract: `base.py`."""
