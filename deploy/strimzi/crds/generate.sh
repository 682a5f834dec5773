#!/usr/bin/env bash
# Regenerate Strimzi's KafkaTopic and KafkaUser CRDs (043-Crd-kafkatopic.yaml, 044-Crd-kafkauser.yaml) with
# Strimzi's own generator, from Strimzi's released jars on Maven Central: the same generator and arguments
# that write packaging/install/cluster-operator/ in Strimzi's build. Needs mvn and Java 21 or later
# (JAVA=/path/to/java); STRIMZI_VERSION picks the release.
set -euo pipefail
version="${STRIMZI_VERSION:-1.2.0}"
java="${JAVA:-java}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.offload-bridge</groupId>
  <artifactId>strimzi-crds</artifactId>
  <version>$version</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$version</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$version</version></dependency>
  </dependencies>
</project>
POM
mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DoutputDirectory="$work/libs" -DincludeScope=runtime
"$java" -cp "$work/libs/*" io.strimzi.crdgenerator.CrdGenerator \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
  "io.strimzi.api.kafka.model.topic.KafkaTopic=$here/043-Crd-kafkatopic.yaml" \
  "io.strimzi.api.kafka.model.user.KafkaUser=$here/044-Crd-kafkauser.yaml"
echo "Strimzi $version CRDs written to $here"
