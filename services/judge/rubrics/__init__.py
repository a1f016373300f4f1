"""Rubric plugins (`loopline.rubrics`): the contract in `base`, one module per built-in rubric."""
