#!/usr/bin/env python3
"""`helm template` without the helm binary: lints and renders a chart with Helm's own Go
engine (the `helm-python-sdk` package, which wraps Helm v4's SDK as a shared library;
scripts/test.sh installs it and sets BFFGATE_HELM_SDK to its folder).

    python3 scripts/helm-template.py CHART [--name N] [--namespace NS] [--set a.b=c]...

Prints the manifests as `helm template` does (`---` and `# Source:` before each, NOTES.txt
and empty ones left out, in file name order) and exits 0; exits 1 with the reason when
linting finds an error or rendering fails, 3 when the SDK cannot be imported.
"""

import argparse
import os
import sys


def merge(into, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("chart")
    p.add_argument("--name", default="bffgate")
    p.add_argument("--namespace", default="default")
    p.add_argument("--set", action="append", default=[], help="helm --set syntax")
    args = p.parse_args()
    sdk = os.environ.get("BFFGATE_HELM_SDK")
    if sdk:
        sys.path.insert(0, sdk)
    try:
        import helm_python as helm
    except ImportError as e:
        print(f"helm-python-sdk is not importable ({e}); run scripts/test.sh to install it", file=sys.stderr)
        return 3
    values = {}
    for s in args.set:
        merge(values, helm.parse_set_string(s))
    lint = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
    if lint.get("errors"):
        print(f"helm lint: {lint}", file=sys.stderr)
        return 1
    try:
        with helm.Chart.load(args.chart) as chart:
            out = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    except Exception as e:  # the SDK's errors carry Helm's message
        print(f"helm template: {e}", file=sys.stderr)
        return 1
    for source in sorted(out):
        text = out[source]
        if source.endswith("NOTES.txt") or not text.strip():
            continue
        print(f"---\n# Source: {source}\n{text.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
