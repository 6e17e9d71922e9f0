"""Phase 3, routing at the server: Sieve rules rendered from the contract, applied over ManageSieve."""
