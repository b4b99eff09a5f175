"""The replicated state machine: the store's tables, the raft FSM that fills them, and the
raft command encoding shared by the server endpoints and the leader's duties."""
