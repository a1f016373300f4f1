"""Code every Loopline service imports: events, settings, broker, plugins, the local stack."""
