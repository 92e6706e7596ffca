"""Pure sans-IO protocol tests (no sockets, no event loop)."""
