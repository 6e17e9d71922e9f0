"""The frame every capability runs in: registry, run context, contracts, receipts, output."""
