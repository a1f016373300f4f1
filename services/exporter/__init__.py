"""exporter: aggregates responses and writes versioned datasets."""
