"""The one version of this build: what `senate version`, `senate info`, /v1/agent/self and the
gossip `build` tag say."""

VERSION = "0.7.2"
REVISION = "senate"
