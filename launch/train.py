"""Entry point for `ray job submit`: validate the config, then run it on Ray Train workers.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python launch/train.py configs/synthetic.yaml --set distributed.num_workers=2

The config is validated here, in the driver, before anything is scheduled: a typo
costs a second, not a cluster allocation. This process imports Ray and the config
only; deepspeed, bitsandbytes and triton load inside the workers
(tests/cluster/test_launch.py holds that). This folder is not installed as a
package: `--working-dir .` brings it along.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# `python launch/train.py` puts launch/ on sys.path, not the repository root that
# `--working-dir .` unpacks; without the package installed, `hyperscale` would not import.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hyperscale.errors import HyperscaleError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch/train.py", description=__doc__.splitlines()[0])
    p.add_argument("config", help="YAML run config, e.g. configs/synthetic.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set distributed.num_workers=2")
    p.add_argument("--run-dir", default=None,
                   help="run directory = Ray storage folder (default: <distributed.storage_path or runs>/<config>-<time>); "
                        "an existing one is resumed from its latest checkpoint")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hyperscale.api import default_run_dir, train
    from hyperscale.config import load_config
    from hyperscale.eval.report import summary_text

    try:
        cfg = load_config(args.config, args.overrides)
    except HyperscaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg, Path(args.config).stem)
    print(f"run directory: {run_dir.resolve()}", flush=True)
    try:  # the run directory is checked (resume / complete / refused) before any worker is scheduled
        metrics = train(cfg, run_dir, use_ray=True, address=args.address)
    except HyperscaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_text(metrics, run_dir))
    if "wall_time_s" in metrics:
        print(f"wall time: {metrics['wall_time_s']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
