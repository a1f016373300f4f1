"""Routers (`loopline.routers`): whether a record goes on through its flow. Contract: `base.py`."""
