"""Model providers: the `Model` protocol, the scripted test double and real wire formats."""
