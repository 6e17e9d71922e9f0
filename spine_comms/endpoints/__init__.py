"""Contracts + environment overrides + secrets -> ready clients.

Protocol modules know the wire and nothing of contracts, environment variables or secrets; domain
packages ask here for a client. (The DAV account lives here; the mailbox, ManageSieve, Stalwart and
bridge builders still sit beside their domains and are to follow.)
"""
