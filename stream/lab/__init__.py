"""The quality lab: ``evaluate`` (settings x inputs), metrics, reference codecs, synthesised
test material, the demo and the quality plot."""
