"""Sans-I/O core: pure functions and state machines.

Nothing here touches the network, the disk, a clock or a random source: callers pass
time and randomness in. import-linter enforces that this package imports no other layer.
"""
