"""What composes with what: the one source of the composition matrix.

Rows are input encoding × DLIF gain mode × architecture, columns the operations a user
reaches in a command or two. Every cell either *runs* and checks a property, is
*refused* with one line and exit status 2 that names the combination and why, or is
*open*: it still does something wrong with exit 0, the fix is known and waits on a file
being split (its test is ``xfail(strict=True)``, so it fails once the fix lands and the
cell must then move to *refused*).

``tests/test_composition.py`` runs every cell through the real CLI on tiny models (a
representative diagonal in ``make test``, all of them under ``-m slow``);
``python tests/composition.py`` prints the README's table and ``--write`` puts it there.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

ENCODINGS = ("spiking", "analog", "events")
GAIN_MODES = ("fold", "exact")
ARCHITECTURES = ("mlp", "convnet")

#: one attack of each family, as ``evaluate --attacks`` takes them.
ATTACKS = ("PGD-7", "Square", "APGD-CE")

#: operation → its column header.
OPERATIONS: Dict[str, str] = {
    "simulate": "`simulate --labels`",
    "lava": "`simulate --backend lava`",
    "float": "`evaluate` float",
    "transfer": "`evaluate` transfer",
    "chip": "`evaluate` chip",
    "certify": "`certify`",
    "faults": "`evaluate --faults`",
    "verify": "`verify`",
    "nir": "`export-nir` + `import-nir`",
    "info": "`info`",
    "predict": "`predict` (API)",
}

#: operation → (short property for the table, what the test checks).
PROPERTIES: Dict[str, Tuple[str, str]] = {
    "simulate": ("labels, above chance", "the labels are the recorded test split's and "
                 "accuracy is above chance"),
    "lava": ("Lava = sim", "Lava's fixed-point CPU model predicts what the simulator does"),
    "float": ("attacks ≤ clean", f"{', '.join(ATTACKS)} on the float model: no attack "
              "above clean accuracy, every example within its budget"),
    "transfer": ("attacks ≤ chip clean", f"{', '.join(ATTACKS)} crafted on the float model, "
                 "run on the chip: none above the chip's clean accuracy (which equals "
                 "`simulate`'s) by more than one sample, the most a float-crafted example "
                 "repairing a chip error by chance is allowed"),
    "chip": ("attacks ≤ clean = sim", f"{', '.join(ATTACKS)} on the integer model "
             "(straight-through gradients, integer queries): none above clean, and clean "
             "equals `simulate`'s accuracy"),
    "certify": ("abstain rate reported", "randomized smoothing of the integer model: the "
                "abstain rate is printed and equals the share of abstentions"),
    "faults": ("level 0 = clean", "spike drop, weight bit flips and threshold mismatch on "
               "the chip: level 0 equals clean, every level is reported"),
    "verify": ("Lava = sim, every state", "every u, v and spike of every layer equal in "
               "Lava and the simulator"),
    "nir": ("same predictions", "the file written to NIR and read back predicts what the "
            "original does"),
    "info": ("mapped, chip holds it", "core mapping and energy estimate printed; the chip "
             "can hold every neuron field"),
    "predict": ("= simulate", "`rssnn_deploy.predict` returns `simulate`'s predictions"),
}

#: event data: (short, long) where the property differs.
EVENT_PROPERTIES: Dict[str, Tuple[str, str]] = {
    threat: ("L0 flips ≤ clean", "the sparse (L0) event-flip attack, the gradient family "
             "on spike trains (Square and APGD have no spike form), never above clean "
             "under the column's threat model (transfer and chip: clean equals `simulate`'s)")
    for threat in ("float", "transfer", "chip")}
EVENT_PROPERTIES["info"] = ("mapped, chip holds it", "core mapping printed, the chip holds "
                            "every field; no energy estimate without counted inputs, "
                            "and it says so")


@dataclass(frozen=True)
class Cell:
    """One combination and what it must do."""

    encoding: str
    gain: str
    arch: str
    op: str
    outcome: str          # "runs", "refused" or "open"
    short: str            # the table's words
    detail: str           # the property checked, or the reason for the refusal
    message: str = ""     # refused/open: a regex the one error line must match

    @property
    def row(self) -> Tuple[str, str, str]:
        return self.encoding, self.gain, self.arch

    @property
    def id(self) -> str:
        return f"{self.encoding}-{self.gain}-{self.arch}-{self.op}"


def expectation(encoding: str, gain: str, arch: str, op: str) -> Cell:
    """What the cell must do (the rules behind the whole matrix)."""
    def make(outcome: str, short: str, detail: str, message: str = "") -> Cell:
        return Cell(encoding, gain, arch, op, outcome, short, detail, message)

    if op == "nir" and gain == "exact":
        return make("refused", "no NIR form for per-step gains",
                    "NIR has no per-step input gain; export-nir names the layer and asks "
                    "for --gain-mode fold", r"DLIF per-step gains have no NIR form")
    if encoding == "events" and op == "certify":
        return make("refused", "smoothing needs pixels",
                    "randomized smoothing adds Gaussian noise to pixels; spike trains have "
                    "none", r"event data .*randomized smoothing")
    if encoding == "events" and op == "faults":
        return make("refused", "faults act on the image evaluation",
                    "the event evaluation runs event drop, jitter and the sparse flip "
                    "attack; --faults is refused in one line (cli.evaluate_args."
                    "check_event_options)", r"event data .*--faults")
    short, detail = (EVENT_PROPERTIES if encoding == "events" else {}).get(op, PROPERTIES[op])
    return make("runs", short, detail)


def cells() -> Iterator[Cell]:
    for encoding in ENCODINGS:
        for gain in GAIN_MODES:
            for arch in ARCHITECTURES:
                for op in OPERATIONS:
                    yield expectation(encoding, gain, arch, op)


#: the rows ``make test`` runs: three tiny models, every encoding, gain mode and
#: architecture at least once (see :func:`diagonal`).
DIAGONAL_ROWS = (("spiking", "fold", "mlp"), ("analog", "exact", "convnet"),
                 ("events", "fold", "mlp"), ("spiking", "exact", "mlp"))
#: cells the cycle of :func:`diagonal` misses: both refusals and faults on images.
DIAGONAL_EXTRA = (("analog", "exact", "convnet", "nir"), ("events", "fold", "mlp", "certify"),
                  ("analog", "exact", "convnet", "faults"))


def diagonal() -> List[Cell]:
    """Operation j on row j mod 4 of :data:`DIAGONAL_ROWS`, and :data:`DIAGONAL_EXTRA`."""
    chosen = [expectation(*DIAGONAL_ROWS[j % len(DIAGONAL_ROWS)], op)
              for j, op in enumerate(OPERATIONS)]
    chosen += [expectation(*extra) for extra in DIAGONAL_EXTRA]
    return chosen


# ------------------------------------------------------------------------ README table

START = "<!-- composition matrix: generated by `python tests/composition.py --write` -->"
END = "<!-- end of composition matrix -->"


def readme_table() -> str:
    """The Markdown the README holds between :data:`START` and :data:`END`."""
    names = {"mlp": "MLP", "convnet": "conv"}
    header = "| input | gains | arch | " + " | ".join(OPERATIONS.values()) + " |"
    lines = [header, "|" + "---|" * (3 + len(OPERATIONS))]
    by_row: Dict[Tuple[str, str, str], List[Cell]] = {}
    for cell in cells():
        by_row.setdefault(cell.row, []).append(cell)
    for (encoding, gain, arch), row in by_row.items():
        texts = [f"{c.outcome}: {c.short}" if c.outcome != "open" else f"**open**: {c.short}"
                 for c in row]
        lines.append(f"| {encoding} | {gain} | {names[arch]} | " + " | ".join(texts) + " |")
    counts = {k: sum(c.outcome == k for c in cells()) for k in ("runs", "refused", "open")}
    notes = [
        "",
        f"{counts['runs']} cells run, {counts['refused']} are refused with one line "
        f"(exit 2), {counts['open']} {'is' if counts['open'] == 1 else 'are'} open. "
        "What each *runs* cell checks:",
        "",
    ]
    notes += [f"* {OPERATIONS[op]}: {detail}." for op, (_, detail) in PROPERTIES.items()]
    events: Dict[str, List[str]] = {}
    for op, (_, detail) in EVENT_PROPERTIES.items():
        events.setdefault(detail, []).append(OPERATIONS[op])
    notes += [f"* events, {' / '.join(ops)}: {detail}." for detail, ops in events.items()]
    seen = set()
    for cell in cells():
        if cell.outcome != "runs" and cell.short not in seen:
            seen.add(cell.short)
            notes.append(f"* {cell.outcome} ({cell.short}): {cell.detail}.")
    return "\n".join([START, *lines, *notes, END])


def readme_section(text: str) -> str:
    """The generated part of ``text`` (the README), markers included; '' if absent."""
    match = re.search(re.escape(START) + r".*?" + re.escape(END), text, flags=re.S)
    return match.group(0) if match else ""


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true",
                        help=f"replace the table in {README.name} (between its markers)")
    args = parser.parse_args(argv)
    table = readme_table()
    if not args.write:
        print(table)
        return 0
    text = README.read_text()
    old = readme_section(text)
    if not old:
        print(f"{README}: no markers {START!r} … {END!r}", file=sys.stderr)
        return 1
    README.write_text(text.replace(old, table))
    print(f"wrote the table into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
