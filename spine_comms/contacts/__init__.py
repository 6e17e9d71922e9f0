"""Phase 2, contacts: CardDAV status, address books and contact cards."""
