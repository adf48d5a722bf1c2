"""Tests of the cdk8s charts (k8s_charts/)."""
