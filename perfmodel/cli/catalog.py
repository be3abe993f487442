"""``perfmodel hardware list|show`` and ``perfmodel models list``: the catalogs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser("hardware", help="the hardware catalog").add_subparsers(dest="action", required=True)
    h.add_parser("list", help="GPUs and clusters").set_defaults(handler=hardware_list)
    show = h.add_parser("show", help="one GPU or cluster, as JSON")
    from perfmodel.cli.options import HARDWARE

    show.add_argument("name", type=HARDWARE)
    show.set_defaults(handler=hardware_show)
    m = sub.add_parser("models", help="the model catalog").add_subparsers(dest="action", required=True)
    m.add_parser("list", help="catalog models and their shapes").set_defaults(handler=models_list)


def hardware_list(args: argparse.Namespace) -> int:
    from hardware import list_clusters, list_gpus, load_gpu, load_hardware
    from perfmodel.analysis.report import table

    rows = [{"name": n, "kind": "gpu", "description": load_gpu(n).display_name} for n in list_gpus()]
    rows += [{"name": n, "kind": "cluster", "description": load_hardware(n).display_name} for n in list_clusters()]
    print(table(rows, (("name", "name"), ("kind", "kind"), ("description", "description"))))
    return 0


def hardware_show(args: argparse.Namespace) -> int:
    from hardware import load_hardware
    from perfmodel.analysis.report import dumps_json

    print(dumps_json(load_hardware(args.name)))
    return 0


def models_list(args: argparse.Namespace) -> int:
    from perfmodel.model.shape import list_models, load_model
    from perfmodel.analysis.report import table

    rows = []
    for name in list_models():
        m = load_model(name)
        rows.append({"name": name, "params_b": m.num_params() / 1e9,
                     "active_b": m.num_active_params() / 1e9 if m.is_moe else "", "layers": m.num_layers, "hidden": m.hidden_size,
                     "heads": m.num_attention_heads, "kv_heads": m.num_kv_heads, "experts": m.num_experts})
    print(table(rows, (("name", "name"), ("params_b", "params (B)"), ("active_b", "active (B)"), ("layers", "layers"), ("hidden", "hidden"),
                       ("heads", "heads"), ("kv_heads", "KV heads"), ("experts", "experts"))))
    return 0
