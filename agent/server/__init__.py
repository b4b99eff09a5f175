"""What only servers do: RPC on the server port, bootstrap, leader duties (endpoints.py: the RPC methods)."""
