"""spine-comms: a self-hosted mail server as the communications layer for AI agents."""

__version__ = "0.1.0"
