"""The HyperPod dependency Helm chart (health monitoring agent, deep health check, job auto restart, NVIDIA
and EFA device plugins), installed before the HyperPod cluster is created.

The chart is published only in a git repository and has remote subcharts, so it needs `helm dependency
build` before install. Synth stays offline: with `source="github"` a CodeBuild project inside AWS fetches
the pinned commit and prepares the chart at deploy time; with `source="local"` (air-gapped) the deploying
machine supplies a prepared chart directory as an asset.

Pure parts: `recipe.py` (values, buildspec phases, the chart's S3 key, the local chart check) and
`digest.py` (the chart digest, in Python and as the buildspec's shell line). Constructs: `release.py`
(`HyperPodDependencies`, the Helm release) and `chart_build.py` (`ChartBuild`, CodeBuild at deploy time).
"""
