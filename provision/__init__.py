"""provision: stands senate datacenters up over SSH from a YAML inventory."""
