"""Command line: `latefusion prepare | train | check-data | probe | predict | guide | demo | report | compare | config | list | methods |
encoders | datasets`. Run `latefusion COMMAND --help`; `--import MODULE` loads your own methods, encoders or data sets
(docs/configs.md#plugins)."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import traceback
from pathlib import Path

from . import distributed
from .config import dump_config, parse_overrides
from .data import DATASETS, IN_MEMORY, build_dataset
from .compare import FORMATS as COMPARE_FORMATS, WIDTH as COMPARE_WIDTH
from .data.prepared import RECIPES
from .errors import ConfigError, UserError
from .interrupt import Interrupted, stop_on_signal
from .methods import METHODS
from .models import ENCODERS
from .plugins import import_plugins, load_entry_points
from .resolve import resolve_config
from .runs import RunDir
from .storage import describe_os_error, write_json
from .summary import UNIMODAL
from .version import __version__

DEFAULT_DEMO_DATA = "avdigits"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML run configuration (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--quick", action="store_true", help="the data set's quick settings (fewer epochs / samples); "
                        "an error on a data set without them (the --quick column of `latefusion list`)")
    parser.add_argument("--data", help="a registered data set name (see `latefusion datasets`), a path to your own "
                        "data: a folder with manifest.csv, or an .npz file (docs/data-format.md), or a folder made by `latefusion prepare`")


def data_overrides(data: str | None) -> list[str]:
    """`--data` as config overrides: a path selects the bring-your-own `folder` data set, or the data set
    a prepared folder was made from (`latefusion prepare NAME`)."""
    if data is None:
        return []
    if data not in DATASETS and Path(data).exists():  # a registered name wins; write ./NAME for a folder so named
        path = Path(data).resolve()
        return [f"data.name={prepared_dataset(path) or 'folder'}", f"data.path={path}"]
    if "/" in data or data.endswith(".npz"):
        raise ConfigError(f"--data {data}: no such file or folder (a path must exist; a data set name has no '/')")
    return [f"data.name={data}"]


def prepared_dataset(path: Path) -> str | None:
    """The registered data set a prepared folder holds (its index.json says which), else None."""
    from .storage import read_json

    index = path / "index.json"
    if not index.is_file():
        return None
    name = read_json(index).get("dataset")
    return name if isinstance(name, str) and name in DATASETS else None


def command_prepare(args: argparse.Namespace) -> None:
    from .data.prepared import prepare

    report = prepare(args.dataset, args.src, args.dst, parse_overrides(args.overrides), workers=args.workers)
    written = ", ".join(f"{split} {n}" for split, n in report["written"].items())
    print(f"prepared {args.dataset} into {args.dst}: {written} samples "
          f"({report['shards']['reused']} of {report['shards']['total']} shards reused from an earlier run)")
    for kind, key in (("skipped", "why"), ("filled", "note")):
        if report[kind]:
            print(f"{len(report[kind])} {kind}, e.g. {report[kind][0]['id']}: {report[kind][0][key]}")
    print(f"details in {args.dst / 'report.json'}")


def add_prefer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefer", choices=["umt", "ume"], default="umt", help="the guide's method for a near-tie (UMT and UME "
                        "within half a point on validation): umt (default: at least as good on test in every case of the guide's "
                        "benchmark) or ume (cheaper: no joint training)")


def add_seeds_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, metavar="N", help="repeat with seeds 0..N-1 into OUT/seed-K/: sets train.seed=K "
                        "and, for synthetic data, data.options.seed=K (fresh data per seed)")


def refuse_resume_of_nothing(out: Path, seeds: int | None) -> None:
    """`--resume` continues the run(s) in OUT: a folder holding none (a typo) is an error, not a fresh run."""
    from .errors import RunFolderError
    from .seeds import SEED_PREFIX

    if seeds is None and not RunDir(out).config_file.is_file():
        raise RunFolderError(f"{out} holds no run to resume (no config.yaml); to start a new run there, leave out --resume")
    if seeds is not None and not any(RunDir(out / f"{SEED_PREFIX}{k}").config_file.is_file() for k in range(max(seeds, 0))):
        raise RunFolderError(f"{out} holds no runs to resume; to start new runs there, leave out --resume")


def command_train(args: argparse.Namespace) -> None:
    from .seeds import each_seed, mean_and_std
    from .train import train

    if args.resume:
        refuse_resume_of_nothing(Path(args.out), args.seeds)
    overrides = [*data_overrides(args.data), *args.overrides, *(["data.skip_bad=true"] if args.skip_bad else [])]
    stored = RunDir(args.out).config_file
    if args.resume and args.seeds is None and stored.is_file() and not (overrides or args.config or args.quick):
        config = RunDir(args.out).config()  # `train --out RUN --resume` alone continues RUN as it was configured
    else:
        config = resolve_config(args.config, overrides, quick=args.quick)
    if args.seeds is None:
        result = train(config, args.out, resume=args.resume)
        if distributed.is_main():  # under torchrun, once
            if args.json:
                print(json.dumps({k: v for k, v in result.metrics.items() if k != "environment"}, indent=2))
            else:
                epochs = f"best epoch {result['best_epoch'] + 1} of {result['epochs_run']}" if result["epochs_run"] else "no training"
                print(f"{args.out}: {result['method']} on {result['dataset']}: val {result['val_acc']:.3f}  test {result['test_acc']:.3f}  "
                      f"({epochs}, {result['wall_time_s']:.0f} s); everything in {RunDir(args.out).result_file}")
        return
    scores = {label: {k: v for k, v in train(seed_config, folder, resume=args.resume).items() if k in ("val_acc", "test_acc")}
              for label, seed_config, folder in each_seed(config, args.out, args.seeds)}
    mean, std = mean_and_std(list(scores.values()))
    if distributed.is_main():
        summary = {"mean": mean, "std": std, "per_seed": scores}
        write_json(Path(args.out) / "summary.json", summary)
        print(json.dumps(summary, indent=2))


def command_predict(args: argparse.Namespace) -> None:
    from .predict import predict_rows, write_predictions

    run = RunDir(args.run)
    config = resolve_config(run.config_file, [*data_overrides(args.data), *args.overrides])
    rows = predict_rows(run, config, args.split)
    write_predictions(rows, args.out)
    if "label" not in rows[0]:
        print(f"wrote {args.out}: {len(rows)} predictions by {args.run} (every sample of {config.data.path}, which gives no labels)")
        return
    right = sum(row["predicted"] == row["label"] for row in rows)
    print(f"wrote {args.out}: {len(rows)} predictions by {args.run} ({', '.join(args.split or ['test'])}; "
          f"{right / len(rows) * 100:.1f}% agree with the data's labels)")


def command_check_data(args: argparse.Namespace) -> int:
    from .data.checks import check_bundle, format_report

    config = resolve_config(args.config, [*data_overrides(args.dataset or args.data), *args.overrides], quick=args.quick)
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
    from .guide import verdict_text
    from .pipeline import guide_folder, guide_from_runs

    if args.pipeline_dir is not None:
        verdict = guide_folder(args.pipeline_dir, prefer=args.prefer)
    else:
        if not (args.unimodal and args.naive and args.ume):
            raise ConfigError("guide needs a demo folder, or all of --unimodal MODALITY=DIR (per modality), --naive DIR and --ume DIR")
        verdict = guide_from_runs(parse_modality_runs(args.unimodal), args.naive, args.ume, umt=args.umt, prefer=args.prefer)
    if "per_seed" in verdict:
        for label, one in verdict["per_seed"].items():
            print(f"{label}: {verdict_text(one)}")
        if verdict["pooled"]:
            print(f"\nOver the seeds: {verdict_text(verdict['pooled'])}")
    else:
        print(f"{verdict_text(verdict)}\n\n{verdict['reason']}")
    if args.json:
        print(json.dumps(verdict, indent=2))


def parse_methods(value: str) -> list[str]:
    """`--methods`: `paper` (the paper's set only), `all` (plus every baseline), or methods by name, comma-separated."""
    from .pipeline import baseline_methods

    if value == "paper":
        return []
    if value == "all":
        return baseline_methods()
    names = [name.strip() for name in value.split(",") if name.strip()]
    runnable = [name for name in METHODS.names() if METHODS.get(name).group != UNIMODAL]
    unknown = [name for name in names if name not in runnable]
    if unknown or not names:
        raise ConfigError(f"--methods {value!r}: expected paper, all, or a comma-separated list of {', '.join(runnable)}; unknown: {unknown}")
    return names


def command_demo(args: argparse.Namespace) -> None:
    from .pipeline import run_demo
    from .report import terminal_summary, write_report

    base = resolve_config(args.config, [*data_overrides(args.data), *args.overrides], quick=args.quick)
    out = args.out or Path("runs") / f"demo-{Path(base.data.path).stem if base.data.path else base.data.name}"
    method_options, methods = parse_overrides(args.method_options), parse_methods(args.methods)
    log = print if distributed.is_main() else (lambda *_: None)  # under torchrun, the main process speaks and writes
    # The report is written here rather than by run_demo, to print the summary it was drawn from.
    run_demo(base, out, seeds=args.seeds, method_options=method_options, methods=methods, prefer=args.prefer, report=False, log=log)
    if not distributed.is_main():
        return
    written = write_report([out])
    print(f"\n{terminal_summary(written.report)}\n\nwrote {out / 'summary.json'} and {written.markdown}\nreport: {written.html}")


def command_report(args: argparse.Namespace) -> None:
    from .report import terminal_summary, write_report

    written = write_report(args.run_dirs, args.out)
    print(f"{terminal_summary(written.report)}\n\nwrote {written.markdown}\nreport: {written.html}")


def command_datasets(args: argparse.Namespace) -> None:
    from .config import DataConfig

    print(f"{'name':<22} {'modalities':<40} {'classes':>7}  train/val/test")
    for name in DATASETS.names():
        try:
            bundle = build_dataset(DataConfig(name=name))
        except ConfigError:  # data sets read from disk need data.path; in-memory data is built in Python
            print(f"{name:<22} {'(built in Python: latefusion.data.from_arrays)' if name == IN_MEMORY else '(reads your files: --data PATH)':<40}")
            continue
        modalities = ", ".join(f"{m.name} {m.kind} {'x'.join(map(str, m.shape))}" for m in bundle.modalities)
        sizes = "/".join(str(len(bundle.splits[s])) for s in ("train", "val", "test"))
        print(f"{name:<22} {modalities:<40} {bundle.num_classes:>7}  {sizes}")


def command_config(args: argparse.Namespace) -> None:
    print(dump_config(resolve_config(args.config, [*data_overrides(args.data), *args.overrides], quick=args.quick)), end="")


def one_line(entry, prefer_module: bool = False) -> str:
    """A registry entry's description: its `description` attribute, else the first sentence of its
    docstring (or of its module's), shortened to one line."""
    module = sys.modules.get(getattr(entry, "__module__", ""), None)
    docs = [getattr(module, "__doc__", None), entry.__doc__] if prefer_module else [entry.__doc__, getattr(module, "__doc__", None)]
    text = getattr(entry, "description", None) or next((d for d in docs if d and d.strip()), "")
    paragraph = " ".join(inspect.cleandoc(text).split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 100 else sentence[:99] + "\u2026"


def print_methods() -> None:
    print(f"{'method':<12} {'group':<9} description")
    for name in METHODS.names():
        method = METHODS.get(name)
        print(f"{name:<12} {method.group:<9} {one_line(method)}")


def print_encoders() -> None:
    print(f"{'encoder':<12} description")
    for name in ENCODERS.names():
        print(f"{name:<12} {one_line(ENCODERS.get(name))}")


def print_dataset_names() -> None:
    print(f"{'data set':<20} {'--quick':<7} description")
    for name in DATASETS.names():
        quick = "yes" if "quick" in DATASETS.defaults(name) else "-"
        print(f"{name:<20} {quick:<7} {one_line(DATASETS.get(name), prefer_module=True)}")


def command_list(args: argparse.Namespace) -> None:
    print_methods()
    print()
    print_encoders()
    print()
    print_dataset_names()
    print("\n(`latefusion datasets` builds each data set and shows its modalities and sizes)")


def command_compare(args: argparse.Namespace) -> None:
    from .compare import compare_runs, format_table

    comparison = compare_runs(args.runs)
    print(format_table(comparison, args.width) if args.format == "table" else COMPARE_FORMATS[args.format](comparison), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latefusion", description=__doc__)
    parser.add_argument("--version", action="version", version=f"latefusion {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too (bad config, bad data)")
    parser.add_argument("--import", dest="imports_before", action="append", default=[], metavar="MODULE", help=IMPORT_HELP)
    common = argparse.ArgumentParser(add_help=False)  # what every command takes
    common.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], **kwargs)

    p = command("prepare", help="decode a downloaded data set, or your own folder (`prepare folder`), into the prepared format training reads")
    p.add_argument("dataset", help=f"the data set's recipe: one of {', '.join(RECIPES.names())}")
    p.add_argument("--src", type=Path, required=True, help="the raw download (layout: see the data set's section in docs/datasets.md), "
                   "or for `folder` your own folder with manifest.csv (docs/data-format.md)")
    p.add_argument("--dst", type=Path, required=True, help="prepared folder to write (rerun the same command to resume)")
    p.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a prepare option of the data set, e.g. --set split=2 (repeatable)")
    p.set_defaults(handler=command_prepare)

    p = command("train", help="train one run (any method) into a run folder")
    add_config_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="run folder to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--skip-bad", action="store_true", help="drop the samples the data checks find bad instead of stopping (data.skip_bad=true)")
    p.add_argument("--json", action="store_true", help="print result.json (without the environment) instead of one line")
    add_seeds_argument(p)
    p.set_defaults(handler=command_train)

    p = command("check-data", help="run every data check on a data set, without training; exit 1 if any problem is found")
    p.add_argument("dataset", nargs="?", help="data set name or path to your data (same as --data; default: the config's data.name)")
    add_config_arguments(p)
    p.set_defaults(handler=command_check_data)

    p = command("probe", help="linear-probe each frozen encoder of a finished run")
    p.add_argument("run", type=Path)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=command_probe)

    p = command("predict", help="a finished run's predictions on data, written as CSV (id, label, predicted class, probabilities)",
                description="A finished run's predictions on data, written as CSV: split, id, label, predicted class and p_<class> for "
                            "each class. New data without labels: a manifest folder (an id column and the run's modality columns; "
                            "no label or split column needed) or an .npz file of the run's modality arrays; every sample is "
                            "predicted, in order, read as the run's data were (its image size, audio rate and length), and the rows "
                            "have no split and label.")
    p.add_argument("run", type=Path, help="a finished run folder")
    p.add_argument("--data", help="the data to predict on (default: the run's own), as for `train --data`; labels optional for a "
                                  "manifest folder or .npz file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a data key, e.g. --set data.path=...")
    p.add_argument("--split", nargs="+", choices=["train", "val", "test"], help="the splits of labeled data to predict (default: test); "
                                                                                 "data without labels: every sample")
    p.add_argument("--out", type=Path, default=Path("predictions.csv"), help="the CSV file to write (default: predictions.csv)")
    p.set_defaults(handler=command_predict)

    p = command("guide", help="choose UME or UMT from uni-modal runs and a naive fusion run")
    p.add_argument("pipeline_dir", type=Path, nargs="?", help="a `latefusion demo` output folder (one seed, or the folder of --seeds N)")
    p.add_argument("--unimodal", action="append", default=[], metavar="MODALITY=DIR")
    p.add_argument("--naive", metavar="DIR")
    p.add_argument("--ume", metavar="DIR")
    p.add_argument("--umt", metavar="DIR", help="a UMT run, compared with UME when given")
    add_prefer_argument(p)
    p.add_argument("--json", action="store_true", help="also print the evidence as JSON")
    p.set_defaults(handler=command_guide)

    p = command("demo", help="the whole pipeline on one data set: uni-modal, naive, UME, UMT, probes, guide")
    add_config_arguments(p)
    p.add_argument("--out", type=Path, help="output folder (default: runs/demo-<data>)")
    p.add_argument("--method-option", dest="method_options", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="an option for one method, e.g. --method-option umt.weight=50")
    p.add_argument("--methods", default="paper", metavar="paper|all|NAME,...",
                   help="paper: unimodal, naive, UME, UMT (default); all: also every baseline (see `latefusion methods`); "
                        "or the paper's set plus the methods named, e.g. ogm_ge,gblend")
    add_seeds_argument(p)
    add_prefer_argument(p)
    p.set_defaults(handler=command_demo)

    p = command("report", help="write report.html (self-contained) and report.md from demo output folders")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                   help="a `latefusion demo` output folder; several: seeds of one data set; a folder of seed-K subfolders: all of them")
    p.add_argument("--out", type=Path, help="folder to write the report into (default: RUN_DIR, when one is given)")
    p.set_defaults(handler=command_report)

    p = command("compare", help="a table of finished runs: the config keys they differ in, accuracy, macro-F1, probes")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders (of `latefusion train`, or inside a demo folder)")
    p.add_argument("--format", choices=["table", *COMPARE_FORMATS], default="table",
                   help="table: text in at most --width columns (default); csv, json: every run's differing settings and its scores "
                        "(fractions, as result.json holds them), whole")
    p.add_argument("--width", type=int, default=COMPARE_WIDTH, metavar="N", help=f"the table's width in characters (default: "
                   f"{COMPARE_WIDTH}); the settings that do not fit beside the scores go to further tables")
    p.set_defaults(handler=command_compare)

    p = command("config", help="print the resolved configuration (defaults, --config, --set, --data, --quick); runs nothing")
    add_config_arguments(p)
    p.add_argument("--print", action="store_true", help="print it as YAML (the default, and so far the only action)")
    p.set_defaults(handler=command_config)

    p = command("list", help="list the methods (with their group), encoders and data sets")
    p.set_defaults(handler=command_list)

    p = command("methods", help="list the methods, their group and what each does")
    p.set_defaults(handler=lambda args: print_methods())

    p = command("encoders", help="list the encoders")
    p.set_defaults(handler=lambda args: print_encoders())

    p = command("datasets", help="list the available data sets")
    p.set_defaults(handler=command_datasets)
    return parser


IMPORT_HELP = ("import a module (a name, or a .py file) before the command runs, so the methods, encoders and data sets "
               "it registers can be used (repeatable); see docs/configs.md#plugins")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "demo" and not args.data and not args.config and not any(o.startswith("data.name=") for o in args.overrides):
        args.data = DEFAULT_DEMO_DATA
    try:
        load_entry_points()
        import_plugins([*args.imports_before, *args.imports])
        with stop_on_signal():
            return args.handler(args) or 0
    except Interrupted as stop:
        print(f"latefusion {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except UserError as error:  # anything else is a bug: its traceback is shown
        if args.debug:
            traceback.print_exc()
        print(f"latefusion {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A full disk, a read-only file system, no permission, a file where a folder should be: the
        # system's refusal, not a bug, named by path and cause (storage.OUTPUT_ERRNOS). Writes through
        # storage already raise OutputError; this covers the rest (a run folder's mkdir, a file read).
        cause = describe_os_error(error)
        if cause is None:
            raise
        if args.debug:
            traceback.print_exc()
        where = f"{error.filename}: " if error.filename else ""
        print(f"latefusion {args.command}: error: {where}{cause}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
