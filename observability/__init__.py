"""Pure recipes for metrics and dashboards: scrape configuration, Helm values, dashboards, access commands.

No aws_cdk imports: the stacks build resources from these, the tests run a real Prometheus on them, and the
operations CLI imports `access` without paying for CDK.
"""
