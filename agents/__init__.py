"""Agents: reference policies, the SB3 adapter, evaluation and the command line."""
