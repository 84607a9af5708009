"""The operator console: server-rendered pages, live updates and `/metrics`, served by
aiohttp on the receiver's own event loop (docs/console.md)."""
