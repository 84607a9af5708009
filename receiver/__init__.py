"""The centre: the modem bank, the store and `callhome-receiver`."""
