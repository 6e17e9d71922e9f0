"""From an empty directory to a root: `spine-comms init`, and `contracts.check` that proves a root's contracts."""
