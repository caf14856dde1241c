#!/usr/bin/env python3
"""Validate the Twenty Questions knowledge base (knowledge.json).

Usage: python3 validate_knowledge.py [path/to/knowledge.json]

Checks the schema and the hard requirements of the data file, prints a
summary, and exits with status 1 (listing every problem found) on failure.
Standard library only.
"""
import itertools
import json
import os
import re
import sys
from collections import Counter, defaultdict

MIN_WORDS = 160
MIN_CATEGORIES = 16
MIN_WORDS_PER_CATEGORY = 6
MIN_ATTRIBUTES = 40
MIN_PARAPHRASES, MAX_PARAPHRASES = 2, 4
MIN_ALIASES, MAX_ALIASES = 1, 3
SUBSET_SIZE = 10
MIN_SUBSET_CATEGORIES = 8
MAX_ONE_DIFF_FRACTION = 0.05

ID_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
YES_NO_STARTS = {
    "is", "are", "was", "were", "does", "do", "did", "can", "could", "would",
    "will", "should", "has", "have", "had",
}


def normalise(text):
    text = text.lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def alias_pattern(alias):
    # whole-word match of the alias, also catching simple plurals (alias+s/es)
    return re.compile(r"(?<![\w'-])" + re.escape(alias) + r"(?:s|es)?(?![\w'-])", re.IGNORECASE)


def validate(data):
    errors = []
    err = errors.append

    if not isinstance(data, dict) or set(data) != {"attributes", "words", "subset"}:
        err("top level must be an object with exactly the keys attributes, words, subset")
        return errors, None

    # ---------------- attributes ----------------
    attrs = data["attributes"]
    if not isinstance(attrs, list):
        err("attributes must be a list")
        return errors, None
    attr_ids = []
    all_questions = []  # (text, attribute id)
    for i, a in enumerate(attrs):
        if not isinstance(a, dict) or set(a) != {"id", "question", "paraphrases"}:
            err(f"attribute #{i}: must have exactly the keys id, question, paraphrases")
            continue
        aid = a["id"]
        if not isinstance(aid, str) or not ID_RE.match(aid):
            err(f"attribute #{i}: id {aid!r} is not snake_case")
            continue
        attr_ids.append(aid)
        paras = a["paraphrases"]
        if not isinstance(paras, list) or not (MIN_PARAPHRASES <= len(paras) <= MAX_PARAPHRASES):
            err(f"attribute {aid}: needs {MIN_PARAPHRASES}-{MAX_PARAPHRASES} paraphrases")
            paras = paras if isinstance(paras, list) else []
        for q in [a["question"]] + list(paras):
            if not isinstance(q, str) or not q.strip():
                err(f"attribute {aid}: empty or non-string question {q!r}")
                continue
            if not q.endswith("?"):
                err(f"attribute {aid}: question does not end with '?': {q!r}")
            first = normalise(q).split(" ")[0] if normalise(q) else ""
            if first not in YES_NO_STARTS:
                err(f"attribute {aid}: does not look like a yes/no question: {q!r}")
            all_questions.append((q, aid))
    dup_ids = [k for k, v in Counter(attr_ids).items() if v > 1]
    if dup_ids:
        err(f"duplicate attribute ids: {dup_ids}")
    if len(attr_ids) < MIN_ATTRIBUTES:
        err(f"only {len(attr_ids)} attributes (need >= {MIN_ATTRIBUTES})")
    seen_q = {}
    for q, aid in all_questions:
        n = normalise(q)
        if n in seen_q:
            err(f"duplicate question after normalisation: {q!r} ({aid}) vs ({seen_q[n]})")
        else:
            seen_q[n] = aid

    # ---------------- words ----------------
    words = data["words"]
    if not isinstance(words, list):
        err("words must be a list")
        return errors, None
    id_set = set(attr_ids)
    names = []
    alias_owner = {}
    by_category = defaultdict(list)
    vectors = {}
    for i, w in enumerate(words):
        if not isinstance(w, dict) or set(w) != {"word", "aliases", "category", "attributes"}:
            err(f"word #{i}: must have exactly the keys word, aliases, category, attributes")
            continue
        name = w["word"]
        if not isinstance(name, str) or not name or name != name.lower() or name != name.strip():
            err(f"word #{i}: word {name!r} must be a non-empty lowercase string")
            continue
        names.append(name)
        cat = w["category"]
        if not isinstance(cat, str) or not cat or cat != cat.lower() or cat != cat.strip():
            err(f"{name}: category {cat!r} must be a non-empty lowercase string")
        else:
            by_category[cat].append(name)
        aliases = w["aliases"]
        if not isinstance(aliases, list) or not (MIN_ALIASES <= len(aliases) <= MAX_ALIASES):
            err(f"{name}: needs {MIN_ALIASES}-{MAX_ALIASES} aliases")
            aliases = aliases if isinstance(aliases, list) else []
        if not aliases or aliases[0] != name:
            err(f"{name}: first alias must equal the word")
        if len(set(aliases)) != len(aliases):
            err(f"{name}: repeated alias")
        for al in aliases:
            if not isinstance(al, str) or al != al.lower() or al != al.strip() or not al:
                err(f"{name}: alias {al!r} must be a non-empty lowercase string")
                continue
            if al in alias_owner and alias_owner[al] != name:
                err(f"alias {al!r} belongs to both {alias_owner[al]!r} and {name!r}")
            alias_owner[al] = name
        vals = w["attributes"]
        if not isinstance(vals, dict):
            err(f"{name}: attributes must be an object")
            continue
        missing = id_set - set(vals)
        extra = set(vals) - id_set
        if missing:
            err(f"{name}: missing attributes {sorted(missing)}")
        if extra:
            err(f"{name}: unknown attributes {sorted(extra)}")
        bad = [k for k, v in vals.items() if not isinstance(v, bool)]
        if bad:
            err(f"{name}: non-boolean values for {sorted(bad)}")
        vectors[name] = tuple(vals.get(a) is True for a in attr_ids)

    dup_words = [k for k, v in Counter(names).items() if v > 1]
    if dup_words:
        err(f"duplicate words: {dup_words}")
    if len(names) < MIN_WORDS:
        err(f"only {len(names)} words (need >= {MIN_WORDS})")
    if len(by_category) < MIN_CATEGORIES:
        err(f"only {len(by_category)} categories (need >= {MIN_CATEGORIES})")
    for cat, ws in sorted(by_category.items()):
        if len(ws) < MIN_WORDS_PER_CATEGORY:
            err(f"category {cat!r} has only {len(ws)} words (need >= {MIN_WORDS_PER_CATEGORY})")

    # aliases must not contain another word's alias as a whole word
    alias_list = sorted(alias_owner.items())
    for (a1, o1), (a2, o2) in itertools.permutations(alias_list, 2):
        if o1 != o2 and alias_pattern(a2).search(a1):
            err(f"alias {a1!r} ({o1}) contains alias {a2!r} ({o2}) as a whole word")

    # questions must not name any alias
    for q, aid in all_questions:
        for al, owner in alias_list:
            if alias_pattern(al).search(q):
                err(f"attribute {aid}: question {q!r} contains alias {al!r} of {owner!r}")

    # ---------------- attribute informativeness ----------------
    n_words = len(vectors)
    fractions = {}
    if n_words:
        for j, a in enumerate(attr_ids):
            t = sum(v[j] for v in vectors.values())
            fractions[a] = t / n_words
            if t == 0 or t == n_words:
                err(f"attribute {a} is constant over all words")

    # ---------------- pair differences ----------------
    hist = Counter()
    close_pairs = []
    for (n1, v1), (n2, v2) in itertools.combinations(vectors.items(), 2):
        d = sum(x != y for x, y in zip(v1, v2))
        if d == 0:
            err(f"words {n1!r} and {n2!r} have identical attribute values")
        hist[min(d, 3)] += 1
        if d <= 2:
            close_pairs.append((d, n1, n2))
    n_pairs = sum(hist.values())
    if n_pairs and hist[1] / n_pairs >= MAX_ONE_DIFF_FRACTION:
        err(f"{hist[1]} of {n_pairs} pairs differ in exactly one attribute "
            f"(must be < {MAX_ONE_DIFF_FRACTION:.0%})")

    # ---------------- subset ----------------
    subset = data["subset"]
    if not isinstance(subset, list) or len(subset) != SUBSET_SIZE or len(set(subset)) != SUBSET_SIZE:
        err(f"subset must be a list of {SUBSET_SIZE} distinct words")
    else:
        cat_of = {w["word"]: w["category"] for w in words if isinstance(w, dict) and "word" in w}
        missing = [s for s in subset if s not in cat_of]
        if missing:
            err(f"subset words not in words: {missing}")
        cats = {cat_of[s] for s in subset if s in cat_of}
        if len(cats) < MIN_SUBSET_CATEGORIES:
            err(f"subset spans only {len(cats)} categories (need >= {MIN_SUBSET_CATEGORIES})")

    summary = {
        "words": len(names),
        "categories": len(by_category),
        "category_sizes": {c: len(ws) for c, ws in sorted(by_category.items())},
        "attributes": len(attr_ids),
        "fractions": fractions,
        "hist": hist,
        "pairs": n_pairs,
        "close_pairs": sorted(close_pairs),
    }
    return errors, summary


def print_summary(s, verbose):
    print(f"words:      {s['words']}")
    print(f"categories: {s['categories']}")
    for c, n in s["category_sizes"].items():
        print(f"  {c:28s} {n}")
    print(f"attributes: {s['attributes']}")
    fr = s["fractions"]
    if fr:
        vals = list(fr.values())
        lo = min(fr, key=fr.get)
        hi = max(fr, key=fr.get)
        print(f"attribute true-fraction: min {min(vals):.3f} ({lo}), "
              f"mean {sum(vals) / len(vals):.3f}, max {max(vals):.3f} ({hi})")
        between = sum(1 for v in vals if 0.2 <= v <= 0.8)
        print(f"attributes with true-fraction in [0.2, 0.8]: {between}")
        if verbose:
            for a, v in sorted(fr.items(), key=lambda kv: -kv[1]):
                print(f"  {a:24s} {v:.3f}")
    h, n = s["hist"], s["pairs"]
    if n:
        print(f"pair-difference histogram over {n} pairs:")
        print(f"  exactly 1: {h[1]} ({h[1] / n:.2%})")
        print(f"  exactly 2: {h[2]} ({h[2] / n:.2%})")
        print(f"  3 or more: {h[3]} ({h[3] / n:.2%})")
        if h[0]:
            print(f"  identical: {h[0]}")
    if verbose:
        for d, a, b in s["close_pairs"]:
            print(f"  close pair (diff {d}): {a} / {b}")


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    path = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "knowledge.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"FAIL: cannot read {path}: {e}", file=sys.stderr)
        return 1
    errors, summary = validate(data)
    if summary:
        print_summary(summary, verbose)
    if errors:
        print(f"\nFAIL: {len(errors)} problem(s) in {path}:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(f"\nOK: {path} passes all checks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
