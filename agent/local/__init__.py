"""What every agent does for its own node: services, checks, anti-entropy, log streaming."""
