"""The diagnostics agent: collectors, check states, when to call (issue 11)."""
