"""The DNS interface on 8600: Consul 0.7's node, service and reverse lookups over UDP and TCP.

`config.py` validates dns_config; `names.py` classifies a query name (pure); `records.py`
builds answers from catalog replies (pure); `server.py` is the asyncio shell that reads
packets, asks the agent over `AgentAPI.rpc` and writes replies.
"""
