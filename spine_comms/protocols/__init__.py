"""Thin clients, one per wire protocol. They know the wire, not the policy."""
