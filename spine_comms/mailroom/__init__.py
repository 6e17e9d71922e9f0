"""The mailroom agents read: the spine's filesystem lanes and item format, and the bridge client."""
