#!/bin/sh
# The health-check command of apache/kafka's image, answered by a small probe: exit 0 when the broker at
# --bootstrap-server answers an ApiVersions request without error.
exec python3 /opt/kafka/bin/broker_api_versions.py "$@"
