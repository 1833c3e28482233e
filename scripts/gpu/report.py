#!/usr/bin/env python3
"""Turns the suite's JSON lines (one per measurement, from `omnirl bench ... --json` and the Python
peers; failures are lines with "error") into results.json (the records plus the ours/peer
comparisons) and a markdown report (the tables of docs/performance.md).

  python3 report.py RESULTS.jsonl OUT_DIR --command "bash gpu-bundle/run_suite.sh" [--build-info F]

Left out: plots, and history across runs (each run's report stands alone).
"""
import argparse
import datetime
import json
import os


def gib(x):
    return f"{x / 2**30:.2f}" if isinstance(x, (int, float)) else "n/a"


def pct(x):
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "n/a"


def num(x, fmt="{:.1f}"):
    return fmt.format(x) if isinstance(x, (int, float)) else "n/a"


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else None


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def pick(recs, bench, impl, shape=None):
    for r in recs:
        if r.get("bench") == bench and r.get("implementation") == impl and "error" not in r and "skipped" not in r:
            if shape is None or r.get("shape", {}).get("name") == shape:
                return r
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out_dir")
    ap.add_argument("--command", default="bash gpu-bundle/run_suite.sh")
    ap.add_argument("--build-info", default=None)
    ap.add_argument("--title", default="GPU suite")
    a = ap.parse_args()
    recs = load(a.results)
    dev = next((r["device"] for r in recs if isinstance(r.get("device"), dict) and r["device"].get("gpu")), None)
    dev = dev or next((r["device"] for r in recs if isinstance(r.get("device"), dict)), {})
    build = open(a.build_info).read().strip() if a.build_info and os.path.exists(a.build_info) else "n/a"
    versions = next(({"torch": r.get("torch"), "transformers": r.get("transformers")} for r in recs
                     if r.get("torch")), {})
    md = [f"## {a.title}: {dev.get('gpu') or dev.get('device', 'unknown device')}", "",
          f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
          f"- command: `{a.command}`", f"- omnirl build: {build}",
          f"- peer: torch {versions.get('torch', 'n/a')}, transformers {versions.get('transformers', 'n/a')}",
          f"- datasheet peaks used: {json.dumps(dev.get('peaks'))}", ""]
    comparisons = {}

    errors = [r for r in recs if "error" in r]
    if errors:
        md += ["### Errors", "", "| bench | implementation | error |", "|---|---|---|"]
        md += [f"| {r.get('bench')} | {r.get('implementation')} | {str(r['error'])[:300]} |" for r in errors]
        md.append("")

    skipped = [r for r in recs if "skipped" in r]
    if skipped:
        md += ["### Not run", "", "| bench | implementation | why |", "|---|---|---|"]
        md += [f"| {r.get('bench')} | {r.get('implementation')} | {r['skipped']} |" for r in skipped]
        md.append("")

    par = [r for r in recs if r.get("bench") == "parity" and "error" not in r]
    if par:
        md += ["### Parity (device vs CPU fp32)", "",
               "| shape | device | dtype | max abs diff | rel. to max logit | tolerance | argmax equal | argmax within tol. | greedy prefix | result |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for r in par:
            md.append(f"| {r['shape']['name']} | {r['device']['device']} | {r['dtype']} | {r['max_abs_diff']:.3e} | "
                      f"{r['rel_max_diff']:.2e} | {r['tolerance']:.0e} | {pct(r['argmax_agreement'])} | "
                      f"{pct(r['argmax_within_tolerance'])} | {r['greedy_prefix_agreement']}/{r['greedy_tokens']} | "
                      f"{'PASS' if r['pass'] else 'FAIL'} |")
        md.append("")

    steps = [r for r in recs if r.get("bench") == "rl_memory" and "error" not in r]
    nccl = [r for r in recs if r.get("bench") == "nccl" and "error" not in r]
    if steps or nccl:
        md += ["### Training step and NCCL", "", "| check | result | detail |", "|---|---|---|"]
        for r in steps:
            md.append(f"| RL step ({r['shape']['name']}, {r['device']['device']}, {r['dtype']}, LoRA {r['lora_rank']}) | "
                      f"{'ok' if r['train_step_ok'] else 'FAILED'} | grad norm {r['grad_norm']:.3e}, step {r['step_s']:.2f} s |")
        for r in nccl:
            md.append(f"| collectives, world size 1 ({r['backend']}, version {r['nccl_version']}) | "
                      f"{'ok' if r['pass'] else 'FAILED'} | {r['bytes'] >> 20} MiB all-reduce "
                      f"{r['all_reduce_s_min'] * 1e3:.2f} ms ({num(r['host_staged_gbps'])} GB/s host-staged) |")
        md.append("")

    ours, peer = pick(recs, "learner", "omnirl", "7b") or pick(recs, "learner", "omnirl"), None
    if ours:
        peer = pick(recs, "learner", "transformers", ours["shape"]["name"])
        md += [f"### Learner: forward + backward, {ours['shape']['name']}, {ours['seq_len']} tokens, {ours['dtype']}, "
               f"checkpointing {ours['checkpointing']}", "",
               "| implementation | tokens/s | s/step | model TFLOP/s | MFU | HFU | peak memory GiB | loss |",
               "|---|---|---|---|---|---|---|---|"]
        for r in [ours, peer]:
            if not r:
                continue
            mem = (r.get("memory") or {}).get("peak_bytes") or (r.get("torch_memory") or {}).get("max_reserved_bytes")
            md.append(f"| {r['implementation']} | {r['tokens_per_s']:.0f} | {r['step_s']:.3f} | {r['achieved_tflops']:.1f} | "
                      f"{pct(r['mfu'])} | {pct(r['hfu'])} | {gib(mem)} | {r['loss']:.3f} |")
        q = ratio(ours["tokens_per_s"], peer["tokens_per_s"]) if peer else None
        comparisons["learner_ratio"] = q
        md += ["", f"ours / transformers tokens/s: **{num(q, '{:.2f}')}** (goal >= 1.00); "
               f"MFU **{pct(ours['mfu'])}** (goal >= 45%). {ours['flops_formula']}.", ""]

    od = pick(recs, "decode", "omnirl", "7b") or pick(recs, "decode", "omnirl")
    if od:
        pd = pick(recs, "decode", "transformers", od["shape"]["name"])
        prow = {r["batch"]: r for r in (pd or {}).get("rows", [])}
        md += [f"### Decode: {od['shape']['name']}, {od['dtype']}, prompt {od['rows'][0]['prompt_len']}, "
               f"{od['rows'][0]['new_tokens']} new tokens", "",
               "| batch | omnirl tokens/s | transformers tokens/s | ratio | omnirl ms/step | omnirl GB/s | omnirl HBM roofline | transformers roofline |",
               "|---|---|---|---|---|---|---|---|"]
        for r in od["rows"]:
            p = prow.get(r["batch"], {})
            q = ratio(r["decode_tokens_per_s"], p.get("decode_tokens_per_s"))
            comparisons[f"decode_ratio_b{r['batch']}"] = q
            md.append(f"| {r['batch']} | {r['decode_tokens_per_s']:.1f} | {num(p.get('decode_tokens_per_s'))} | "
                      f"{num(q, '{:.2f}')} | {r['step_ms']:.2f} | {r['achieved_gbps']:.0f} | {pct(r['hbm_share'])} | "
                      f"{pct(p.get('hbm_share'))} |")
        md += ["", f"Goal: >= 50% of the HBM roofline at batch 64. Bytes: {od['bytes_formula']}.", ""]

    enc = pick(recs, "encoders", "omnirl", "7b") or pick(recs, "encoders", "omnirl")
    if enc:
        v, au = enc["vision"], enc["audio"]
        md += [f"### Encoders: {enc['shape']['name']}, {enc['dtype']}", "",
               "| encoder | input | s/call | throughput |", "|---|---|---|---|",
               f"| vision | {v['frames']} frames {v['height']}x{v['width']} (grid {v['grid_thw']}, {v['patches']} patches) | "
               f"{v['s_per_call']:.4f} | {v['patches_per_s']:.0f} patches/s, {v['tokens_per_s']:.0f} tokens/s, {v['frames_per_s']:.1f} frames/s |",
               f"| audio | {au['seconds']:.1f} s ({au['mel_frames']} mel frames, {au['tokens']} tokens) | {au['s_per_call']:.4f} | "
               f"{au['audio_seconds_per_s']:.1f} audio s/s, {au['tokens_per_s']:.0f} tokens/s |", ""]

    mem = [r for r in steps if r["shape"]["name"] == "7b"] or steps
    if mem:
        md += ["### RL memory", "",
               "| shape | LoRA rank | rows x tokens | trainable params | weights GiB | after load GiB | peak GiB | device GiB | step s | ok |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for r in mem:
            m = r.get("memory") or {}
            peak = m.get("peak_bytes", r.get("peak_rss_bytes"))
            md.append(f"| {r['shape']['name']} | {r['lora_rank']} | {r['rows']} x {r['seq_len']} | {r['trainable_params']:,} | "
                      f"{gib(r['weights_bytes'])} | {gib(r.get('after_load_bytes'))} | {gib(peak)} | {gib(m.get('total_bytes'))} | "
                      f"{r['step_s']:.2f} | {r['train_step_ok']} |")
        md += ["", f"Memory source: {mem[0]['memory_source']}.", ""]

    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump({"device": dev, "command": a.command, "build": build, "comparisons": comparisons, "records": recs}, f,
                  indent=1)
    with open(os.path.join(a.out_dir, "performance.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
