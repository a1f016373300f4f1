"""Dataset sources for batch imports: `readers` streams rows, `mapping` turns them into records."""
