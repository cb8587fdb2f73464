"""The evaluation report a person reads: ``report.md`` tables from the record.

Every number in the Markdown comes from the record that is also written to
``report.json`` (with config and versions), so the two cannot disagree. Budgets print
in both forms (``epsilon.eps_text``: ``8/255 (0.0314)``, ``0.1 (25.5/255)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Sequence

from rssnn_deploy.epsilon import eps_text
from rssnn_deploy.report import markdown_table, stability_table
from rssnn_deploy.robustness.attacks import AUTOATTACK, GRADIENTS, describe_attack
from rssnn_deploy.robustness.certify import recorded_limit, samples_for_radius
from rssnn_deploy.robustness.config import THREATS
from rssnn_deploy.robustness.faults import FAULTS
from rssnn_deploy.robustness.protocols import PROTOCOLS
from rssnn_deploy.robustness.record import strongest_over_gradients

__all__ = ["render_markdown", "summary_text", "certification_section", "protocol_section",
           "autoattack_stage_table", "samples_needed_table"]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _level(value: float) -> str:
    """A noise or fault level for people: at most 4 significant digits, no float noise."""
    return f"{value:.4g}"


def _threat_label(threat: str, gradient: str) -> str:
    return f"{THREATS[threat]} ({gradient})"


def _series(rows: Sequence[Mapping[str, Any]]) -> List[tuple]:
    """(threat, gradient) pairs in reading order: threat models, then gradient sources."""
    gradients = list(GRADIENTS) + ["ste", "queries"]
    return sorted({(r["threat"], r["gradient"]) for r in rows},
                  key=lambda s: (list(THREATS).index(s[0]),
                                 gradients.index(s[1]) if s[1] in gradients else len(gradients)))


def clean_table(record: Mapping[str, Any]) -> str:
    lava = record["lava_cross_check"]
    rows = [["float model", _pct(record["clean"]["float"])],
            ["deployed integer model (bit-exact simulator)", _pct(record["clean"]["chip"])]]
    return markdown_table(["model", "clean accuracy (%)"], rows) + "\n\n" + _lava_line(lava)


def _lava_line(lava: Mapping[str, Any]) -> str:
    if lava.get("skipped"):
        return f"Lava cross-check: skipped ({lava['skipped']})."
    verdict = "PASS" if lava.get("passed") else "FAIL"
    runner = ("the project's DLIF process (exact gains)" if lava.get("runner") == "lava_dlif"
              else "stock netx")
    return (f"Lava cross-check ({verdict}): {lava['samples']} attacked inputs drawn from "
            f"{lava['pool']} saved ones ({lava['pool_files']} attack cells) re-run on Lava's "
            f"fixed-point model through {runner}: **{lava['mismatches']} predictions differ** "
            f"from the simulator ({lava['sim_vs_saved_mismatches']} differ from the simulator's "
            "predictions saved at attack time).")


def default_eps_table(record: Mapping[str, Any]) -> str:
    """Rows: threat model × gradient source; columns: attacks, then the per-sample worst case."""
    eps = record["eps"]["default"]
    rows = [r for r in record["attacks"] if r["eps"] == eps]
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    lookup = {(r["threat"], r["gradient"], r["attack"]): r["accuracy"] for r in rows}
    worst = {(w["threat"], w["gradient"]): w["accuracy"] for w in record["worst_case"]
             if w["eps"] == eps}
    body = [[_threat_label(t, g)]
            + [_pct(lookup[(t, g, a)]) if (t, g, a) in lookup else "–" for a in attacks]
            + [f"**{_pct(worst[(t, g)])}**" if (t, g) in worst else "–"]
            for t, g in _series(rows)]
    overall = {w["threat"]: w["accuracy"] for w in record.get("worst_case_all_gradients", [])
               if w["eps"] == eps}
    several = [t for t in THREATS if sum(s[0] == t for s in _series(rows)) > 1]
    body += [[f"{THREATS[t]} (every attack and source)"]
             + [_pct(min(lookup[k] for k in lookup if k[0] == t and k[2] == a))
                if any(k[0] == t and k[2] == a for k in lookup) else "–" for a in attacks]
             + [f"**{_pct(overall[t])}**"] for t in several if t in overall]
    return (markdown_table(["threat model (gradients)", *attacks, "worst case"], body)
            + "\n\nAccuracy (%) of the model each threat model targets (float white-box: the "
            "float model; transfer and chip white-box: the deployed integer model). Worst case: "
            "samples that survive every attack in the row; 'every attack and source': per "
            "sample over every attack and gradient source run against that threat model.")


def autoattack_stage_table(record: Mapping[str, Any]) -> str:
    """AutoAttack member by member: the accuracy left after each, and on how many
    samples each ran (the samples the earlier members left standing)."""
    rows = [r for r in record["attacks"] if r.get("stages")]
    if not rows:
        return ""
    members = [st["attack"] for st in rows[0]["stages"]]
    body = [[_threat_label(r["threat"], r["gradient"]), eps_text(r["eps"])]
            + [f"{_pct(st['accuracy'])} ({st['samples']})" for st in r["stages"]]
            + [f"{sum(st['seconds'] for st in r['stages']):.0f}"] for r in rows]
    header = ["threat model (gradients)", "ε", *[f"after {m}" for m in members], "s"]
    return (markdown_table(header, body)
            + "\n\nAutoAttack standard member by member: accuracy (%) left after each member, "
            "in brackets the samples it attacked (those still standing; the first runs on "
            "all). The last column is AutoAttack's accuracy; s: compute seconds of the "
            "members run for it (an APGD-CE run that is also its own column counts there).")


def eps_sweep_tables(record: Mapping[str, Any]) -> str:
    """One table per threat model: rows attacks (strongest gradient source), columns ε."""
    rows = record["attacks"]
    best = strongest_over_gradients(rows)
    worst = {(w["threat"], w["eps"]): w["accuracy"]
             for w in record.get("worst_case_all_gradients", [])}
    parts = []
    for threat in [t for t in THREATS if any(r["threat"] == t for r in rows)]:
        mine = [r for r in rows if r["threat"] == threat]
        grid = sorted({r["eps"] for r in mine})
        attacks = list(dict.fromkeys(r["attack"] for r in mine))
        gradients = list(dict.fromkeys(g for _, g in _series(mine)))
        clean = _pct(record["clean"]["float" if threat == "float" else "chip"])
        body = [[a, clean] + [_pct(best[(threat, a, e)]) if (threat, a, e) in best else "–"
                              for e in grid] for a in attacks]
        body.append(["**worst case**", clean] + [f"**{_pct(worst[(threat, e)])}**"
                                                 if (threat, e) in worst else "–" for e in grid])
        header = ["attack", "ε = 0"] + [f"ε = {eps_text(e)}" for e in grid]
        parts.append(f"**{THREATS[threat]}** (gradients: {', '.join(gradients)}; each cell the "
                     "strongest), accuracy (%)\n\n" + markdown_table(header, body))
    return ("\n\n".join(parts) + "\n\nWorst case: samples that survive every attack and "
            "gradient source at that ε. Per-gradient numbers are in report.json.")


def noise_table(record: Mapping[str, Any]) -> str:
    body = [[r["kind"], _level(r["level"]), _pct(r["float"]), _pct(r["chip"]),
             f"{100 * (r['chip'] - r['float']):+.1f}"] for r in record["noise"]]
    return markdown_table(["noise", "level", "float (%)", "chip (%)", "chip − float (pp)"], body)


def fault_table(record: Mapping[str, Any]) -> str:
    body = []
    for r in record["faults"]:
        stats = _fault_stats(r)
        body.append([r["kind"], _level(r["level"]), f"{_pct(r['mean'])} ± {_pct(r['std'])}",
                     _pct(r["min"]), len(r["runs"]), stats])
    legend = "; ".join(f"`{k}`: {v}" for k, v in FAULTS.items())
    return (markdown_table(["fault", "level", "chip acc. mean ± std (%)", "worst seed (%)",
                            "seeds", "injected"], body) + f"\n\nLevels — {legend}.")


def _fault_stats(row: Mapping[str, Any]) -> str:
    stats = row.get("stats") or []
    if not stats:
        return "–"
    first = stats[0]
    if "flipped_bits" in first:
        mean = sum(s["flipped_bits"] for s in stats) / len(stats)
        return f"{mean:.0f} of {first['stored_bits']} bits"
    if "dropped_spikes" in first:
        dropped = sum(s["dropped_spikes"] for s in stats)
        seen = max(sum(s["spikes"] for s in stats), 1)
        return f"{100 * dropped / seen:.1f}% of spikes"
    if "mean_relative_change" in first:
        mean = sum(s["mean_relative_change"] for s in stats) / len(stats)
        return f"mean relative change {mean:.3f}"
    return "–"


def sanity_table(record: Mapping[str, Any]) -> str:
    """A scope × check matrix of PASS/FAIL, then the numbers that matter most."""
    checks = record["sanity"]["checks"]
    names = list(dict.fromkeys(c["name"] for c in checks))
    scopes = list(dict.fromkeys(c["scope"] for c in checks))
    cell = {(c["scope"], c["name"]): c for c in checks}

    def mark(scope: str, name: str) -> str:
        c = cell.get((scope, name))
        if c is None:
            return "–"
        return ("PASS" if c["passed"] else "**FAIL**") + (" (advisory)" if c["advisory"] else "")

    matrix = markdown_table(["threat model (gradients)", *names],
                            [[scope] + [mark(scope, n) for n in names] for scope in scopes])
    shown = [c for c in checks if not c["passed"]
             or c["name"] in ("near zero at large ε", "stronger attack never weaker")]
    details = "\n".join(f"- {c['scope']}, {c['name']}: {c['detail']}" for c in shown)
    verdict = "PASS" if record["sanity"]["passed"] else "FAIL"
    return (f"Verdict: **{verdict}** (advisory checks excluded)\n\n{matrix}\n\n{details}")


def protocol_section(record: Mapping[str, Any]) -> str:
    """The protocol, the test-set size and every attack's parameters."""
    config = record.get("config", {})
    name = config.get("protocol", "quick")
    protocol = PROTOCOLS.get(name)
    eps = record["eps"]["default"]
    attacks = list(dict.fromkeys(r["attack"] for r in record["attacks"]))
    if "AutoAttack" in attacks:   # its members' parameters, also when none ran alone
        attacks = list(dict.fromkeys([a for a in attacks if a != "AutoAttack"]
                                     + list(AUTOATTACK) + ["AutoAttack"]))
    classes = int(record.get("classes", 10))
    rows = [[a, describe_attack(a, eps, int(config.get("apgd_steps", 20)),
                                int(config.get("square_queries", 5000)),
                                (config.get("pgd_alpha_factor") or {}).get(a, 2.5), classes)]
            for a in attacks]
    gradients = ", ".join(config.get("gradients", ["bptt"]))
    if config.get("adaptive"):
        gradients += (f"; the adaptive {config['adaptive']} also with the surrogate sweep "
                      "(every surrogate at ½, 1 and 2 × its default scale, per sample the "
                      "strongest)")
    stochastic = record.get("stochastic") or {}
    eot = ("a model's forward pass was random, so gradients were averaged over "
           f"{config.get('eot_samples', 20)} passes (EOT)" if any(stochastic.values()) else
           "both models are deterministic (two identical forward passes agree), so no "
           "expectation over transformation was needed")
    return (f"Protocol **{name}**" + (f": {protocol.description}" if protocol else "")
            + f". Test set: the first {record['samples']} test samples. Default ε = "
            f"{eps_text(eps)}; grid {', '.join(map(eps_text, record['eps']['grid']))}. "
            f"Float-model gradient sources: {gradients}; chip white-box: the simulator's "
            "straight-through gradients (ste); gradient-free attacks query each model "
            f"(queries). Seed {config.get('seed', 0)}; {eot}.\n\n"
            + "Options given explicitly override the preset; the table lists what was run."
            + "\n\n" + markdown_table(["attack", "parameters"], rows))


def certification_section(cert: Mapping[str, Any]) -> str:
    """Certified accuracy vs L2 radius per σ, float vs chip, with abstentions and the
    largest radius the run's n and α can certify (a cell beyond it is 0 by construction,
    marked †, whatever the model)."""
    cfg = cert["parameters"]
    radii = list(next(iter(cert["sigmas"][0]["models"].values()))["certified_accuracy"])
    body = []
    for entry in cert["sigmas"]:
        limit = recorded_limit(entry, cfg)
        for name, label in (("float", "float model"), ("chip", "deployed integer model")):
            summary = entry["models"][name]
            body.append([f"{entry['sigma']:g}", label]
                        + [_pct(summary["certified_accuracy"][r]) + ("†" if float(r) > limit
                                                                     else "") for r in radii]
                        + [_pct(summary["abstain"]), f"{summary['median_radius_correct']:.3g}",
                           f"{limit:.3g}"])
    seconds = sum(e["wall_seconds"] for e in cert["sigmas"])
    chip_s = sum(e["classifier_seconds"].get("chip", 0.0) for e in cert["sigmas"])
    return (f"Randomized smoothing (Cohen, Rosenfeld & Kolter 2019, `CERTIFY`): n0 = "
            f"{cfg['n0']:,} samples for selection, n = {cfg['n']:,} for estimation, α = "
            f"{cfg['alpha']:g} (one-sided Clopper–Pearson), first {cert['samples']} test "
            "images. The base classifier is the deployed integer model run by the bit-exact "
            "simulator (the float model side by side on the same noise draws). Gaussian "
            f"noise is drawn in [0, 1]-pixel space, before the chip's input encoding: "
            f"{cert['noise_space']}. Radii are L2 distances in pixel units.\n\n"
            + markdown_table(["σ", "model"] + [f"r = {r}" for r in radii]
                             + ["abstain (%)", "median radius (correct)",
                                f"largest certifiable radius (n = {cfg['n']:,})"], body)
            + f"\n\nCertified accuracy (%) at L2 radius r (abstentions count as wrong). "
            f"With n = {cfg['n']:,} samples and α = {cfg['alpha']:g} no image can be "
            "certified beyond σ·Φ⁻¹(α^(1/n)), the radius of an image whose every sample "
            "agrees (last column): the drop to 0 there is the sample count's, not the "
            "model's; † marks radii beyond it. A larger radius needs more samples "
            "(`rssnn_deploy.robustness.certify.samples_for_radius`). "
            f"Wall time {seconds:.0f} s, {chip_s:.0f} s of it in the simulator.")


def samples_needed_table(radii: Sequence[float], sigmas: Sequence[float],
                         alpha: float) -> str:
    """Markdown: the fewest estimation samples n that can certify each radius at each σ
    (``certify.samples_for_radius``), counts past ten million in powers of ten."""
    def count(n: int) -> str:
        if n < 10 ** 7:
            return f"{n:,}"
        mantissa, exponent = f"{n:.1e}".split("e")
        return f"{mantissa}·10^{int(exponent)}"
    return markdown_table(["radius"] + [f"σ = {s:g}" for s in sigmas],
                          [[f"{r:g}"] + [count(samples_for_radius(r, s, alpha)) for s in sigmas]
                           for r in radii])


def render_markdown(record: Mapping[str, Any]) -> str:
    eps = record["eps"]
    config = record.get("config", {})
    grid = ", ".join(map(eps_text, eps["grid"]))
    header = (f"# Robustness of the deployed model\n\n"
              f"Checkpoint `{config.get('checkpoint', '?')}`, "
              f"network `{config.get('net_file', '?')}`, "
              f"dataset `{config.get('dataset', '?')}`, {record['samples']} test samples, "
              f"protocol `{config.get('protocol', 'quick')}`. "
              f"L∞ budgets ε in pixel units [0, 1] (and as multiples of 1/255): default "
              f"ε = {eps_text(eps['default'])}; sweep {grid}.")
    stability = record.get("stability") or {}
    stages = autoattack_stage_table(record)
    sections = [
        header,
        "## Protocol\n\n" + protocol_section(record),
        "## Clean accuracy\n\n" + clean_table(record),
        "## Sanity checks of the attacks\n\n" + sanity_table(record),
        f"## Attacks at the default ε = {eps_text(eps['default'])}\n\n"
        + default_eps_table(record),
        *([f"## AutoAttack member by member\n\n{stages}"] if stages else []),
        "## Accuracy vs ε\n\n" + eps_sweep_tables(record),
        *([("## Certified robustness (randomized smoothing)\n\n"
            + certification_section(record["certification"]))]
          if record.get("certification") else []),
        "## Input noise\n\n" + noise_table(record),
        "## Hardware non-idealities (deployed model)\n\n" + fault_table(record),
        "## Per-layer stability (quantizer report)\n\n" + (
            stability_table(stability["layers"]) if stability.get("layers") else "not available")
        + "\n\nWarnings: " + ("; ".join(stability.get("warnings", [])) or "none"),
        "## Plots\n\n" + "\n".join(f"- `{Path(p).name}`" for p in record.get("plots", [])),
        f"Wall time of the run that wrote this report: {record.get('wall_seconds', 0):.0f} s "
        "(cells found in cells.json are not recomputed). Compute time of all cells (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(record.get("compute_seconds", {}).items())),
    ]
    return "\n\n".join(sections) + "\n"


def summary_text(record: Mapping[str, Any], out: Path) -> str:
    """What ``rssnn-deploy evaluate`` prints: the headline tables and where the rest is."""
    eps = record["eps"]["default"]
    sanity = record["sanity"]
    failed = [f"{c['name']} [{c['scope']}]: {c['detail']}" for c in sanity["checks"]
              if not c["passed"] and not c["advisory"]]
    lines = ["## Clean accuracy", "", clean_table(record), "",
             f"## Attacks at ε = {eps_text(eps)}", "", default_eps_table(record), "",
             f"Sanity checks: {'PASS' if sanity['passed'] else 'FAIL'} "
             f"({sum(c['passed'] for c in sanity['checks'])}/{len(sanity['checks'])} passed)"]
    lines += [f"  FAILED {line}" for line in failed]
    lines += ["", f"Full report: {Path(out) / 'report.md'} (tables), report.json (every number), "
              + ", ".join(Path(p).name for p in record.get("plots", []))]
    return "\n".join(lines)
