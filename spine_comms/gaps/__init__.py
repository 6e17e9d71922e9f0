"""Gaps: file, list and close entries of the spine's operational.gaps.yaml, in its schema."""
