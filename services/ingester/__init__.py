"""ingester: takes records in, validates, dedupes, samples and routes them."""
