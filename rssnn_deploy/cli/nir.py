"""``export-nir`` and ``import-nir``: netx files to and from NIR graphs."""
from __future__ import annotations

import argparse

from rssnn_deploy.cli import types as ct
from rssnn_deploy.cli.common import (
    AddCommand,
    existing,
    guarded,
    report_written,
)
from rssnn_deploy.fileio import check_output

__all__ = ['register']


def register(add: AddCommand) -> None:
    """Add this group's subcommands to the parser through ``add``."""
    p = add("export-nir", cmd_export_nir, "write a netx file as a NIR graph (Neuromorphic "
                                          "Intermediate Representation)")
    p.add_argument("net", help="netx .net file")
    p.add_argument("--out", required=True, help="output .nir file")
    p.add_argument("--dt", type=ct.positive_float, default=1.0,
                   help="NIR time per chip step (plain NIR; the snntorch form uses "
                        "snnTorch's fixed 1e-4, the norse form Norse's default 1e-3)")
    p.add_argument("--for", dest="target", choices=("nir", "snntorch", "norse"),
                   default="nir",
                   help="plain NIR 1.0, or the form snnTorch 1.0 / Norse 1.1 imports "
                        "(see rssnn_deploy/interop/targets.py)")

    p = add("import-nir", cmd_import_nir, "read a NIR graph (from rssnn-deploy, snntorch, …) "
                                          "and write it as a netx file")
    p.add_argument("nir", help="input .nir file")
    p.add_argument("--out", required=True, help="output .net file")
    p.add_argument("--dt", type=ct.positive_float, default=None,
                   help="NIR time per chip step (default: the file's metadata, else τ/r)")
    p.add_argument("--profile", default="loihi2", help="hw_profiles/<name>.toml or a path")


def cmd_export_nir(args: argparse.Namespace) -> int:
    """netx file → NIR graph file (parameter mapping in ``rssnn_deploy/interop/README.md``)."""
    from rssnn_deploy.interop.nir_export import write_nir
    from rssnn_deploy.interop.targets import NIRConversionError
    from rssnn_deploy.netx.reader import read_netx
    check_output(args.out, [args.net])
    spec = read_netx(existing(args.net, "netx"))

    def run() -> int:
        try:
            path = write_nir(spec, args.out, dt=args.dt, target=args.target)
        except NIRConversionError as err:        # name the file the layer is in
            raise NIRConversionError(f"{args.net}: {err}") from None
        return report_written(path)
    return guarded(args, run)

def cmd_import_nir(args: argparse.Namespace) -> int:
    """NIR graph file (ours or another library's) → netx file."""
    from rssnn_deploy.hardware.profiles import load_profile
    from rssnn_deploy.interop.nir_import import read_nir
    from rssnn_deploy.netx.writer import write_netx

    check_output(args.out, [args.nir])

    def run() -> int:
        spec = read_nir(existing(args.nir, "nir"), dt=args.dt, profile=load_profile(args.profile))
        print(spec.describe())
        if not spec.meta["nir_import"]["exact"]:
            print("note: weights were rescaled to 8-bit integers (the graph was not integer)")
        return report_written(write_netx(spec, args.out))
    return guarded(args, run)
