"""Typed models of the contracts that more than one domain reads."""
