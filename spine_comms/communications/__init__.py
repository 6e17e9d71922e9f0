"""The communications domain: the stack as a whole (endpoints, TLS)."""
