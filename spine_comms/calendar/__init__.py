"""Phase 2, calendars: CalDAV status, calendars, events, and the sync from the operator's layers."""
