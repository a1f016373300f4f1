"""argilla-publisher: publishes records into Argilla annotation datasets."""
