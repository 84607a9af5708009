"""callhome: the client side of the call-home stack (agent, spool, dialler, CLI)."""
