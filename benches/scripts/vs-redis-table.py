#!/usr/bin/env python3
"""Prints the summary tables of a ../shared/bench/vs-redis --out JSON file as compact markdown.

Usage: benches/scripts/vs-redis-table.py results.json
"""
import json
import sys


def main():
    d = json.load(open(sys.argv[1]))
    for sec in d["sections"]:
        print(f"\n{sec['name']}\n")
        print("| workload | test | redis ops/s | shoal ops/s | ratio | p99 ms r/s | CPU us/op r/s | CPU/op ratio |")
        print("|---|---|---:|---:|---:|---|---|---:|")
        for s in sec["summary"]:
            print(
                f"| {s['label']} | {s['test']} | {s['redis_rps']:,.0f} | {s['candidate_rps']:,.0f} | "
                f"**{s['ratio_median']:.2f}** | {s['redis_p99']:.3f}/{s['candidate_p99']:.3f} | "
                f"{s['redis_server_us_per_op']:.2f}/{s['candidate_server_us_per_op']:.2f} | "
                f"{s['cpu_per_op_ratio_median']:.2f} |"
            )
    m = d.get("memory_ratio")
    if m:
        print(f"\nmemory ratio (bytes/key): {m:.2f}")


if __name__ == "__main__":
    main()
