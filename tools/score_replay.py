#!/usr/bin/env python3
"""Score a `sluice replay` report against the labels `sluice sim` wrote.

usage: tools/score_replay.py REPORT.json LABELS.json

Prints, per attack class, how many of its identities were flagged and the delay from the attack's
start to its first detection (log time), then the false alarms per benign label and the F1 over
identities (an identity counts as flagged when an anomaly names it, as its client or a member).
"""
import json
import sys
from collections import Counter, defaultdict
from datetime import datetime


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def main(report_path, labels_path):
    report = json.load(open(report_path))
    labels = json.load(open(labels_path))
    by_id = {(i["kind"], i["value"]): i for i in labels["identities"]}
    first = {}
    for a in report["anomalies"]:
        members = a.get("members") or [{"client": a["client"], "client_kind": a["client_kind"]}]
        for m in members:
            key = (m["client_kind"], m["client"])
            t = ts(a["first_detected"])
            if key not in first or t < first[key]:
                first[key] = t
    attack_ids = defaultdict(set)
    for i in labels["identities"]:
        if i["attack_class"]:
            attack_ids[i["attack_class"]].add((i["kind"], i["value"]))
    print(f"{'class':<22}{'identities':>11}{'flagged':>9}{'delay_s':>9}")
    tp = fn = 0
    for attack in labels["attacks"]:
        ids = attack_ids[attack["class"]]
        hit = [first[k] for k in ids if k in first]
        tp += len(hit)
        fn += len(ids) - len(hit)
        delay = (min(hit) - ts(attack["start"])).total_seconds() if hit else float("nan")
        print(f"{attack['class']:<22}{len(ids):>11}{len(hit):>9}{delay:>9.0f}")
    benign = Counter(i["label"] for i in labels["identities"] if not i["attack_class"])
    false_alarms = Counter(
        by_id[k]["label"] if k in by_id else "unlabelled"
        for k in first
        if k not in by_id or not by_id[k]["attack_class"]
    )
    fp = sum(false_alarms.values())
    for label, n in sorted(benign.items()):
        print(f"benign {label:<15} {false_alarms.get(label, 0)} of {n} flagged")
    if false_alarms.get("unlabelled"):
        print(f"unlabelled identities flagged: {false_alarms['unlabelled']}")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    print(f"identities: tp {tp} fp {fp} fn {fn}  F1 {f1:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
