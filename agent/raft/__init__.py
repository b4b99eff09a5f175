"""Raft consensus: `core` (the sans-IO algorithm), `log_store` (LMDB), `snapshots`, `wire`,
`transport` (TCP on the server port) and `runner` (`RaftNode`, the asyncio shell)."""
