"""The six Loopline services, one package each."""
