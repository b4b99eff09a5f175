"""The one version of this build: what `senate version`, `senate info`, /v1/agent/self and the
gossip `build` tag say, and the protocol range `senate version` and `-protocol` speak of.
(pyproject.toml repeats VERSION for packaging: provision reads it there; a test checks.)"""

VERSION = "0.7.2"
REVISION = "senate"
#: RFC 3339, as Consul 1.x reports BuildDate in /v1/agent/self and `version -format=json`
BUILD_DATE = "2026-12-03T00:00:00Z"

#: Consul 0.7's agent protocol: spoken by default, and the range -protocol accepts
PROTOCOL_MIN, PROTOCOL_MAX, PROTOCOL_DEFAULT = 2, 3, 2
