"""One JSON + markdown table per research run, naming the machine."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

from icnseg.fileio import write_text


def write_report(out: str, title: str, rows: list[dict], keys: list[str], cols: list[str],
                 seconds: float, **extra) -> None:
    """Write OUT.json (machine, rows, seconds, ``extra``) and OUT.md: a table of ``rows``
    with the columns ``keys`` (text) then ``cols`` (numbers)."""
    from icnseg.benchmarks.machine import machine_info

    machine = machine_info()
    write_text(f"{out}.json", json.dumps({"machine": machine, **extra, "rows": rows,
                                          "seconds": seconds}, indent=1))
    where = f"{machine['cpu']}, {machine['cores']} cores, git {machine['git']}"
    lines = [f"# {title}", "", f"Machine: {where}; {seconds:.0f} s.", "",
             "| " + " | ".join(keys + cols) + " |",
             "|" + "---|" * len(keys) + "---:|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in keys + cols) + " |" for r in rows]
    write_text(f"{out}.md", "\n".join(lines) + "\n")


def model_split_parser(description: str) -> argparse.ArgumentParser:
    """The flags of a per-(model, split) research run: --model, --split, --out."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=CKPT")
    ap.add_argument("--split", action="append", required=True, metavar="NAME=ROOT")
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    return ap


def split_images(root: str, classes):
    """The VOC-layout ``root``'s val list, or its train list when val is empty."""
    from icnseg.data.voc import VocDataset

    data = VocDataset(root, "val", classes=classes)
    return data if len(data) else VocDataset(root, "train", classes=classes)


def each_model_split(args: argparse.Namespace, class_agnostic: bool = False) -> Iterator[tuple]:
    """(model name, torch model, split name, dataset) for every --model x --split of ``args``,
    each checkpoint loaded once; ``class_agnostic``: the split's own classes.txt."""
    from icnseg.benchmarks.ablation import named_paths
    from icnseg.loader import load

    splits = named_paths(args.split, "--split", "ROOT")
    for name, path in named_paths(args.model, "--model").items():
        model = load(path, backend="torch")
        for split, root in splits.items():
            yield name, model, split, split_images(root, None if class_agnostic else model.classes)
