"""Command line: `latefusion train | check-data | probe | guide | demo`. Run `latefusion COMMAND --help`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, parse_overrides, resolve_config
from .interrupt import Interrupted, stop_on_signal
from .registry import UnknownNameError
from .runs import CheckpointError
from .train import NonFiniteLossError

DEFAULT_DEMO_DATA = "synthetic-unimodal"
USER_ERRORS = (ConfigError, CheckpointError, UnknownNameError, FileExistsError, FileNotFoundError, ValueError, NonFiniteLossError)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML run configuration (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--quick", action="store_true", help="the data set's quick settings (fewer epochs / samples)")


def command_train(args: argparse.Namespace) -> None:
    from .train import train

    overrides = [*args.overrides, "data.skip_bad=true"] if args.skip_bad else args.overrides
    config = resolve_config(args.config, overrides, quick=args.quick)
    result = train(config, args.out, resume=args.resume)
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))


def command_check_data(args: argparse.Namespace) -> int:
    from .data import DATASETS
    from .data.checks import check_bundle, format_report

    overrides = [f"data.name={args.data}", *args.overrides] if args.data else args.overrides
    config = resolve_config(args.config, overrides, quick=args.quick)
    bundle = DATASETS.get(config.data.name)(config.data)  # unchecked: the checks are what this command runs
    problems = check_bundle(bundle)
    print(format_report(bundle, problems))
    return 1 if problems else 0


def command_probe(args: argparse.Namespace) -> None:
    from .probe import ProbeConfig, probe_run

    results = probe_run(args.run, config=ProbeConfig(steps=args.steps, seed=args.seed))
    print(f"linear probe of {args.run} (frozen encoders, fresh linear heads):")
    for modality, r in results.items():
        print(f"  {modality:>12}: val {r['val_acc'] * 100:5.1f}  test {r['test_acc'] * 100:5.1f}")


def parse_modality_runs(items: list[str]) -> dict[str, str]:
    runs = {}
    for item in items:
        modality, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--unimodal {item!r}: expected MODALITY=RUN_DIR")
        runs[modality] = path
    return runs


def command_guide(args: argparse.Namespace) -> None:
    from .guide import guide_from_runs

    if args.pipeline_dir is not None:
        root = args.pipeline_dir
        unimodal = {p.name.removeprefix("unimodal-"): str(p) for p in sorted(root.glob("unimodal-*"))}
        naive, ume = str(root / "naive"), str(root / "ume")
        if not unimodal:
            raise FileNotFoundError(f"{root} holds no unimodal-<modality> runs; is it a `latefusion demo` output folder?")
    else:
        if not (args.unimodal and args.naive and args.ume):
            raise ConfigError("guide needs a demo folder, or all of --unimodal MODALITY=DIR (per modality), --naive DIR and --ume DIR")
        unimodal, naive, ume = parse_modality_runs(args.unimodal), args.naive, args.ume
    verdict = guide_from_runs(unimodal, naive, ume)
    print(f"choice: {verdict['choice'].upper()}\n\n{verdict['reason']}")
    if args.json:
        print(json.dumps(verdict, indent=2))


def command_demo(args: argparse.Namespace) -> None:
    from .pipeline import render_tables, run_pipeline

    overrides = [f"data.name={args.data}", *args.overrides] if args.data else list(args.overrides)
    base = resolve_config(args.config, overrides, quick=args.quick)
    out = args.out or Path("runs") / f"demo-{base.data.name}"
    summary = run_pipeline(base, out, method_options=parse_overrides(args.method_options))
    print(f"\n{render_tables(summary)}\n\nguide: {summary['guide']['choice'].upper()}: {summary['guide']['reason']}")
    print(f"\nwrote {out / 'summary.json'} and {out / 'report.md'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latefusion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train one run (any method) into a run folder")
    add_config_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="run folder to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--skip-bad", action="store_true", help="drop the samples the data checks find bad instead of stopping (data.skip_bad=true)")
    p.set_defaults(handler=command_train)

    p = commands.add_parser("check-data", help="run every data check on a data set, without training; exit 1 if any problem is found")
    p.add_argument("data", nargs="?", help="data set name (default: the config's data.name)")
    add_config_arguments(p)
    p.set_defaults(handler=command_check_data)

    p = commands.add_parser("probe", help="linear-probe each frozen encoder of a finished run")
    p.add_argument("run", type=Path)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=command_probe)

    p = commands.add_parser("guide", help="choose UME or UMT from uni-modal runs and a naive fusion run")
    p.add_argument("pipeline_dir", type=Path, nargs="?", help="a `latefusion demo` output folder")
    p.add_argument("--unimodal", action="append", default=[], metavar="MODALITY=DIR")
    p.add_argument("--naive", metavar="DIR")
    p.add_argument("--ume", metavar="DIR")
    p.add_argument("--json", action="store_true", help="also print the evidence as JSON")
    p.set_defaults(handler=command_guide)

    p = commands.add_parser("demo", help="the whole pipeline on one data set: uni-modal, naive, UME, UMT, probes, guide")
    add_config_arguments(p)
    p.add_argument("--data", help=f"data set name (default: {DEFAULT_DEMO_DATA})")
    p.add_argument("--out", type=Path, help="output folder (default: runs/demo-<data>)")
    p.add_argument("--method-option", dest="method_options", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="an option for one method, e.g. --method-option umt.weight=50")
    p.set_defaults(handler=command_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo" and not args.data and not args.config and not any(o.startswith("data.name=") for o in args.overrides):
        args.data = DEFAULT_DEMO_DATA
    try:
        with stop_on_signal():
            return args.handler(args) or 0
    except Interrupted as stop:
        print(f"latefusion {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except USER_ERRORS as error:
        print(f"latefusion {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
