"""Verify suites: packs of gates (receipts, live capability runs, builtin checks) run in parallel within budgets."""
