"""The built-in format plugins (`loopline.formats`), one per module, TRL's column names:
`sft`, `dpo`, `reward`, `kto` (training: `train` and `test` splits) and `eval`. The contract
they implement, and what they share, is `base.py`."""
