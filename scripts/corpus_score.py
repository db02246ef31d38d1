"""Score the failure classifier on the error corpus of issue 21 (tests/data/errors/{dev,test}.yaml).

Prints only aggregate numbers: accuracy, unknown rate, both per engine, per-label recall and the confusion counts
(label -> predicted). For the held-out test split it never prints a text, a URL or a thread, so whoever tunes the
rules can score against it without reading it; `--show-misses` (per-item mistakes) is allowed for dev only.
`--check` validates the corpus files themselves (schema, labels, the sha256 split rule, no thread in both splits).

    python scripts/corpus_score.py dev [--json] [--show-misses]
    python scripts/corpus_score.py test [--json]
    python scripts/corpus_score.py --check
    python scripts/corpus_score.py --thread URL [URL ...]   # where a new thread would go; only "present"/"new" per URL
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO / "tests" / "data" / "errors"
OLD_CORPUS = REPO / "tests" / "data" / "error_corpus.yaml"
SPLITS = ("dev", "test")
FIELDS = ("text", "source", "engine", "label", "thread")
# The classes of issue 21's brief; a label outside them is a typo in the corpus.
LABELS = frozenset("""dtype-unsupported-by-gpu dtype-unsupported-by-model quant-capability quant-dtype quant-method-unknown
loader-mismatch tokenizer-unsupported arch-unsupported kv-cache oom no-kernel-image attention-backend missing-package
version-mismatch remote-code-required port-in-use engine-bug crash wrong-output timeout unknown""".split())


@dataclass(frozen=True)
class Entry:
    text: str
    source: str
    engine: str
    label: str
    thread: str


def load_split(split: str, corpus_dir: Path = CORPUS_DIR) -> list[Entry]:
    raw = yaml.safe_load((corpus_dir / f"{split}.yaml").read_text(encoding="utf-8")) or []
    return [Entry(**{k: str(item[k]) for k in FIELDS}) for item in raw]


def thread_hash_split(thread: str) -> str:
    """The split a new thread goes to (fixed before any rule was written)."""
    return "test" if int(hashlib.sha256(thread.encode()).hexdigest(), 16) % 2 == 1 else "dev"


def check_corpus(corpus_dir: Path = CORPUS_DIR, old_corpus: Path = OLD_CORPUS) -> list[str]:
    """Problems with the corpus files; empty when they keep the rules in tests/data/errors/README.md."""
    problems: list[str] = []
    splits = {s: load_split(s, corpus_dir) for s in SPLITS}
    old_threads = {str(e["source"]).split("#")[0].rstrip("/") for e in yaml.safe_load(old_corpus.read_text()) or []}
    threads = {s: {e.thread for e in entries} for s, entries in splits.items()}
    for shared in sorted(threads["dev"] & threads["test"]):
        problems.append(f"thread in both splits: {shared}")
    texts = Counter(e.text.strip() for entries in splits.values() for e in entries)
    problems += [f"duplicate text ({n}x): {t[:60]!r}" for t, n in texts.items() if n > 1]
    for split, entries in splits.items():
        for i, e in enumerate(entries):
            where = f"{split}[{i}]"
            if e.label not in LABELS:
                problems.append(f"{where}: unknown label {e.label!r}")
            if not e.text.strip():
                problems.append(f"{where}: empty text")
            if e.thread != e.source.split("#")[0].rstrip("/"):
                problems.append(f"{where}: thread is not the source URL without anchor")
            if e.thread in old_threads:
                if split != "dev":
                    problems.append(f"{where}: thread of the old corpus outside dev")
            elif split != thread_hash_split(e.thread):
                problems.append(f"{where}: new thread in {split}, the sha256 rule says {thread_hash_split(e.thread)}")
        per_thread = Counter(e.thread for e in entries if e.thread not in old_threads)
        problems += [f"{split}: {n} texts from one thread (at most 3)" for t, n in per_thread.items() if n > 3]
    return problems


def load_classifier() -> Callable[[str], str]:
    """text -> predicted class, through whatever the taxonomy module offers now (the rules engineer may change it)."""
    taxonomy = importlib.import_module("pytest_qcompat.taxonomy")
    if hasattr(taxonomy, "classify_failure"):
        return lambda text: taxonomy.classify_failure(text)[0]
    if hasattr(taxonomy, "explain"):
        return lambda text: taxonomy.explain(text).error_class
    raise SystemExit("pytest_qcompat.taxonomy has neither classify_failure nor explain")


def rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def score(entries: list[Entry], predict: Callable[[str], str]) -> tuple[dict, list[tuple[Entry, str]]]:
    """Aggregate numbers (safe to print for any split) and the misses (only ever shown for dev)."""
    predicted = [predict(e.text) for e in entries]
    misses = [(e, p) for e, p in zip(entries, predicted) if p != e.label]
    by_engine: dict[str, list[tuple[Entry, str]]] = defaultdict(list)
    by_label: dict[str, list[str]] = defaultdict(list)
    confusion: dict[str, Counter] = defaultdict(Counter)
    for e, p in zip(entries, predicted):
        by_engine[e.engine].append((e, p))
        by_label[e.label].append(p)
        confusion[e.label][p] += 1
    n = len(entries)
    numbers = {
        "n": n,
        "accuracy": rate(n - len(misses), n),
        "unknown_rate": rate(predicted.count("unknown"), n),
        "per_engine": {
            engine: {"n": len(pairs), "accuracy": rate(sum(e.label == p for e, p in pairs), len(pairs)),
                     "unknown_rate": rate(sum(p == "unknown" for _, p in pairs), len(pairs))}
            for engine, pairs in sorted(by_engine.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        },
        "per_label": {label: {"n": len(ps), "recall": rate(ps.count(label), len(ps))}
                      for label, ps in sorted(by_label.items())},
        "confusion": {label: dict(sorted(c.items(), key=lambda kv: -kv[1])) for label, c in sorted(confusion.items())},
    }
    return numbers, misses


def render(split: str, numbers: dict) -> str:
    lines = [f"{split}: {numbers['n']} texts  accuracy {numbers['accuracy']:.1%}  unknown {numbers['unknown_rate']:.1%}",
             "", f"{'engine':<24}{'n':>5}{'accuracy':>10}{'unknown':>9}"]
    lines += [f"{engine:<24}{v['n']:>5}{v['accuracy']:>10.1%}{v['unknown_rate']:>9.1%}"
              for engine, v in numbers["per_engine"].items()]
    lines += ["", f"{'label':<28}{'n':>5}{'recall':>9}  predicted as"]
    for label, v in numbers["per_label"].items():
        spread = ", ".join(f"{p} {c}" for p, c in numbers["confusion"][label].items() if p != label)
        lines.append(f"{label:<28}{v['n']:>5}{v['recall']:>9.1%}  {spread}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", nargs="?", choices=SPLITS)
    parser.add_argument("--json", action="store_true", help="print the same numbers as JSON")
    parser.add_argument("--show-misses", action="store_true", help="list each mistake (dev only)")
    parser.add_argument("--check", action="store_true", help="validate the corpus files and exit")
    parser.add_argument("--thread", nargs="+", metavar="URL",
                        help="for each thread URL: the split the sha256 rule gives it and whether it is already in the "
                             "corpus (either split; prints nothing else)")
    args = parser.parse_args(argv)
    if args.thread:
        present = {e.thread for s in SPLITS for e in load_split(s)}
        for url in args.thread:
            thread = url.split("#")[0].rstrip("/")
            print(f"{thread_hash_split(thread)}\t{'present' if thread in present else 'new'}\t{thread}")
        return 0
    if args.check:
        problems = check_corpus()
        print("\n".join(problems) if problems else
              "corpus ok: " + ", ".join(f"{s} {len(load_split(s))}" for s in SPLITS))
        return 1 if problems else 0
    if not args.split:
        parser.error("give a split (dev or test) or --check")
    if args.show_misses and args.split == "test":
        parser.error("--show-misses is refused for the test split: it is held out")
    sys.path.insert(0, str(REPO))
    numbers, misses = score(load_split(args.split), load_classifier())
    print(json.dumps(numbers, indent=2) if args.json else render(args.split, numbers))
    if args.show_misses:
        print("\nmisses (label -> predicted):")
        for e, p in misses:
            print(f"- {e.label} -> {p}  [{e.engine}] {e.source}\n    {e.text.strip()[:300]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
