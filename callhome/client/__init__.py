"""The client system: everything only a device runs (its CLI, config, spool, dialer).

The rest of `callhome` is what both ends share; this package may use it, and nothing
outside `callhome.client` imports this package except `receiver.demo`, which runs both
ends in one process.
"""
