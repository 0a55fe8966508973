"""Command line: ``python -m diger_lib.cli setup-data [--source DIR] [--dest data] [--copy]``,
``python -m diger_lib.cli id-signal DATASET --codes codes.npy --letter`` (how much sequential signal semantic IDs
carry), ``python -m diger_lib.cli compare RUNS_DIR A B [--overlap 10]`` (paired bootstrap; which users each hits),
``python -m diger_lib.cli table3`` (Table 3 from the committed runs), ``python -m diger_lib.cli peer-table`` (the
peer's TIGER beside our Two-Stage), ``python -m diger_lib.cli study`` (the
diagnosis study's table, ``diger_lib/study.py``) and
``python -m diger_lib.cli relativize-runs PREFIX`` (rewrite committed runs made by an older runner, which recorded
absolute paths, to the repo-relative form the runner writes now)."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from .data import DataError, default_source, setup_data
from .paths import ROOT

# "artifacts_dir": "..." (config.json, papermill metadata) and artifacts_dir = \"...\" (the injected cell's source)
_ARTIFACTS_PARAM = re.compile(r'(artifacts_dir(?:\\?"\s*:\s*|\s*=\s*)\\?")([^"\\]*)(\\?")')
_OUTPUT_PATH = re.compile(r'("output_path":\s*")([^"]*)(")')


def relativize_text(text: str, prefix: str, rel_path: str) -> str:
    """One committed file's text with the machine's ``prefix`` (the old checkout, ending in "/") removed.

    ``artifacts_dir`` values become the unresolved form the notebooks take now (``""`` for the profile's own
    folder, ``"dynamics"`` for another profile's); papermill's ``output_path`` becomes the file's own location.
    """
    parts = Path(rel_path).parts
    profile = parts[1] if len(parts) > 2 and parts[0] == "papermill_runs" else ""

    def artifacts(m: re.Match) -> str:
        value = m.group(2)
        if value.startswith(prefix + "artifacts/"):
            rest = value[len(prefix + "artifacts/"):].rstrip("/")
            value = "" if rest == profile else rest
        return m.group(1) + value + m.group(3)

    text = _ARTIFACTS_PARAM.sub(artifacts, text)
    if rel_path.endswith(".ipynb") and profile:
        text = _OUTPUT_PATH.sub(lambda m: m.group(1) + rel_path + m.group(3), text)
    return text.replace(prefix, "")


def relativize_runs(prefix: str, folders: tuple[str, ...] = ("papermill_runs", "figures")) -> list[str]:
    """Rewrite every git-tracked text file under ``folders``; returns the files changed."""
    prefix = prefix.rstrip("/") + "/"
    tracked = subprocess.run(["git", "ls-files", "-z", *folders], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    changed = []
    for rel in filter(None, tracked):
        path = ROOT / rel
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # PNG, PDF
        new = relativize_text(text, prefix, rel)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(rel)
    return changed


def _compare(args: argparse.Namespace) -> int:
    from .metrics import hit_overlap, paired_bootstrap_seeds
    from .runs import read_runs, shared_ids

    try:
        a = read_runs(args.runs_dir, [n for n in args.a.split(",") if n], need="test_ranks.txt.gz")
        b = read_runs(args.runs_dir, [n for n in args.b.split(",") if n], need="test_ranks.txt.gz")
        try:
            shared_ids(a + b)  # a run that recorded no digest cannot be shown to share the others' IDs
        except ValueError as e:
            if not args.any_ids:
                raise ValueError(f"{e} (--any-ids compares them anyway, over the same test users)") from None
            print(f"note: {e}; compared over the same test users (--any-ids), so the difference includes the IDs'")
        if args.overlap and (len(a) != 1 or len(b) != 1):
            raise ValueError("--overlap compares one run with one run (give a single name on each side)")
        ra, rb = [r.ranks() for r in a], [r.ranks() for r in b]
        print(f"A = {', '.join(r.name for r in a)}\nB = {', '.join(r.name for r in b)}\n"
              f"test users {len(ra[0])}, {args.n_boot} paired resamples; per-user metrics averaged over each side's runs")
        for metric in args.metrics.split(","):
            r = paired_bootstrap_seeds(ra, rb, metric, n_boot=args.n_boot)
            seeds = lambda xs: " ".join(f"{x:.4f}" for x in xs)  # noqa: E731
            print(f"{metric}: A {r['a']:.4f} ({seeds(r['a_seeds'])})  B {r['b']:.4f} ({seeds(r['b_seeds'])})  "
                  f"A-B {r['diff']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]  P(A-B<=0) {r['p_le_0']:.3f}")
        if args.overlap:
            o = hit_overlap(ra[0], rb[0], args.overlap)
            print(f"hits at {args.overlap}: A {o.a:.4f}, B {o.b:.4f}, both {o.both:.4f}, either {o.union:.4f}; A's "
                  f"R@{args.overlap} on the users B hits {o.a_on_b_hits:.4f}, on the users B misses {o.a_on_b_misses:.4f}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _id_signal(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import load_interactions, split_leave_one_out
    from .diagnostics import id_signal
    from .pipeline import load_letter_ids

    try:
        split = split_leave_one_out(load_interactions(args.data_root, args.dataset), args.max_history)
        codes = {}
        for path in args.codes:
            c = np.load(path)
            if c.ndim != 2 or len(c) != split.n_items:
                raise ValueError(f"{path}: codes of shape {c.shape}, expected [{split.n_items} items, levels]")
            label = "ours: " + "/".join(Path(path).parts[-4:-1])  # e.g. "ours: paper_cpu/Yelp/rqvae_K256_m3"
            codes[label if label not in codes else f"{label} ({len(codes) + 1})"] = c
        if args.letter:
            codes["LETTER (published)"] = load_letter_ids(args.data_root, args.dataset, split.n_items)[0]
        if not codes:
            raise ValueError("give at least one --codes file or --letter")
    except (ValueError, FileNotFoundError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    samples = getattr(split, args.split)
    import pandas as pd

    from .tables import markdown_table

    table = pd.DataFrame(id_signal(samples, codes, seed=args.seed)).rename(columns={"ids": "IDs"})
    print(f"{args.dataset}, {args.split} samples ({len(samples)}): share of targets whose first l codes equal those of "
          f"an item in their history\n")
    print(markdown_table(table.map(lambda v: ("" if pd.isna(v) else f"{v:.3f}") if isinstance(v, float) else v)), end="")
    return 0


def _study(args: argparse.Namespace) -> int:
    from .study import command, evaluate, write_study

    try:
        rows = evaluate(runs_root=args.runs, n_boot=args.n_boot)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    csv, md = write_study(rows, args.out, command(args.runs, args.out, args.n_boot), args.runs)
    done = sum(r.status == "ok" for r in rows)
    print(f"{done} of {len(rows)} comparisons evaluated ({len(rows) - done} not run yet): {csv}, {md}")
    return 0


def _table3(args: argparse.Namespace) -> int:
    from .table3 import refresh

    if not Path(args.baselines).is_dir():
        print(f"error: {args.baselines} is not a folder of notebook-03b runs", file=sys.stderr)
        return 1
    _, written = refresh(args.baselines, args.generative, args.figures)
    print("written:", *written)
    return 0


def _peer_table(args: argparse.Namespace) -> int:
    from . import records
    from .peer_tiger import comparison_table, write_table

    runs = Path(args.runs)
    done = sorted(d.parent for d in runs.glob("04b_peer_tiger__*/metrics.json"))
    if not done:
        print(f"error: {args.runs} has no finished notebook-04b run", file=sys.stderr)
        return 1
    configs = [records.read_json(d / "config.json") for d in done if (d / "config.json").is_file()]
    compare = args.compare if args.compare is not None else next((c["compare_run"] for c in configs), "")
    print("written:", *write_table(comparison_table(runs, runs.name, compare), args.figures))
    return 0


def _progress(args: argparse.Namespace) -> int:
    from .watch import report

    try:
        print(report(args.runs, args.profiles))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _readme_results(args: argparse.Namespace) -> int:
    from .atomic import atomic_open
    from .reproduce import readme_results

    try:
        text = readme_results(Path(args.readme).read_text(encoding="utf-8"), args.figures)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with atomic_open(args.readme, "w") as fh:
        fh.write(text)
    print(f"{args.readme}: Results block regenerated from {args.figures}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="diger_lib.cli")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sd = sub.add_parser("setup-data", help="link/copy the datasets into data/ and verify their SHA-256")
    sd.add_argument("--source", default=None, help="folder holding Beauty/ Instruments/ Yelp/ "
                    "(default: $DIGER_DATA or ../shared/data)")
    sd.add_argument("--dest", default="data")
    sd.add_argument("--copy", action="store_true", help="copy instead of symlink")
    rr = sub.add_parser("relativize-runs", help="make committed runs' recorded paths repo-relative")
    rr.add_argument("prefix", help="the absolute checkout path the old runs recorded, e.g. /work/main")
    rd = sub.add_parser("readme-results", help="regenerate the README's Results block from figures/table*.md")
    rd.add_argument("--readme", default="README.md")
    rd.add_argument("--figures", default="figures", help="where notebook 06 wrote table2.md ... claims.md")
    cp = sub.add_parser("compare", help="paired bootstrap over the same test users: runs A (one or several seeds) "
                        "against runs B, e.g. `compare papermill_runs/diagnosis dg_x,dg_x_s2027 ts_s2026,ts_s2027`")
    cp.add_argument("runs_dir", help="a profile's folder of runs, e.g. papermill_runs/diagnosis")
    cp.add_argument("a", help="comma-separated run names (variants) of side A")
    cp.add_argument("b", help="comma-separated run names of side B")
    cp.add_argument("--metrics", default="R@10,N@10")
    cp.add_argument("--n-boot", type=int, default=5000)
    cp.add_argument("--any-ids", action="store_true", help="compare runs trained on different semantic IDs (e.g. "
                    "LETTER's against ours, or one tokenizer rebuilt on another machine): still paired over the test "
                    "users, but the difference then includes the IDs'")
    cp.add_argument("--overlap", type=int, default=0, metavar="K", help="also print which test users each run hits "
                    "at K, e.g. a recommender against the Markov-1 floor (one run per side)")
    st = sub.add_parser("study", help="every comparison of the diagnosis study (diger_lib/study.py) as one table: "
                        "<out>.csv and <out>.md")
    st.add_argument("--runs", default="papermill_runs", help="the folder holding diagnosis_tokA/, diagnosis_tokB/, "
                    "diagnosis/")
    st.add_argument("--out", default="figures/diagnosis_study", help="written as <out>.csv and <out>.md")
    st.add_argument("--n-boot", type=int, default=5000)
    ig = sub.add_parser("id-signal", help="how much sequential signal semantic IDs carry: the share of targets whose "
                        "ID prefix some history item shares, per level, beside the same codes over permuted items")
    ig.add_argument("dataset")
    ig.add_argument("--codes", action="append", default=[], help="a tokenizer's codes.npy [items, levels] "
                    "(repeatable), e.g. $DIGER_ARTIFACTS/paper_cpu/Yelp/rqvae_K256_m3/codes.npy")
    ig.add_argument("--letter", action="store_true", help="add LETTER's published IDs (DATASET.index.json)")
    ig.add_argument("--data-root", default="data")
    ig.add_argument("--split", choices=("train", "valid", "test"), default="test")
    ig.add_argument("--max-history", type=int, default=20)
    ig.add_argument("--seed", type=int, default=0, help="seed of the item permutation (the control)")
    t3 = sub.add_parser("table3", help="rebuild figures/table3 (paper vs ours) from the committed baseline runs and a "
                        "generative profile's runs (notebook 03b does it after each baseline run)")
    t3.add_argument("--baselines", default="papermill_runs/baselines", help="the folder of notebook-03b runs")
    t3.add_argument("--generative", default="paper_cpu", help="the profile whose notebook-04 runs fill TIGER, LETTER, "
                    "DIGER and the floors ('' for none)")
    t3.add_argument("--figures", default="figures")
    pt = sub.add_parser("peer-table", help="rebuild figures/peer_tiger (the peer's TIGER runs beside our Two-Stage) "
                        "from the finished notebook-04b runs (each run writes it too)")
    pt.add_argument("--runs", default="papermill_runs/peer_tiger", help="the folder of notebook-04b runs")
    pt.add_argument("--compare", default=None, help="the Two-Stage run beside them, under the runs root (default: the "
                    "compare_run the runs recorded)")
    pt.add_argument("--figures", default="figures")
    pg = sub.add_parser("progress", help="what a running batch is doing: the last line each running step printed "
                        "(read from its notebook, which papermill saves while a cell runs)")
    pg.add_argument("profiles", nargs="*", help="profiles to look at (default: every one with runs)")
    pg.add_argument("--runs", default="papermill_runs", help="the runs root (the runner's working tree's)")
    args = ap.parse_args(argv)
    handlers = {"progress": _progress, "table3": _table3, "peer-table": _peer_table, "id-signal": _id_signal,
                "compare": _compare, "study": _study, "readme-results": _readme_results}
    if args.cmd in handlers:
        return handlers[args.cmd](args)
    if args.cmd == "setup-data":
        try:
            files = setup_data(args.source, args.dest, copy=args.copy)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{len(files)} data files verified (sha256) in {args.dest}/ from {args.source or default_source()}")
    elif args.cmd == "relativize-runs":
        changed = relativize_runs(args.prefix)
        print(f"{len(changed)} files rewritten", *changed, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
