#!/usr/bin/env python3
"""What the expressions of a Prometheus rules file refer to, against real /metrics.

  promql_refs.py names RULES            the metric names the rules use, one a line
  promql_refs.py check RULES SCRAPE...  one line per problem; none when every
                                        reference exists in the scrapes

`check` asks of every selector in every `expr:` that
  - its metric is a sample name in one of the scrapes (Prometheus text format),
    or a name a `record:` rule of the file defines, or `up` (Prometheus's own);
  - some sample of that metric satisfies all of its label matchers together,
    so a renamed label or label value (result="unavailable", status=~"5..")
    is caught as well as a renamed metric.
Recorded names and `up` are not in /metrics: only their names are checked.
tests/it_ops.sh runs it.
"""
import re
import sys

import yaml

LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
PROMETHEUS_OWN = {"up"}

TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[smhdwy]*(?:\d+[smhdwy]+)*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[=<>(){}\[\],+\-*/%^@:])
""", re.X)


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError("cannot read %r at %d" % (expr, pos))
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


def selectors(expr):
    """[(metric name or None, [(label, op, value)])] of an expression."""
    toks, out, i = tokens(expr), [], 0

    def matchers(i):           # toks[i] is '{'; returns (matchers, index after '}')
        found, i = [], i + 1
        while toks[i][1] != "}":
            if toks[i][1] == ",":
                i += 1
                continue
            label, op, value = toks[i][1], toks[i + 1][1], toks[i + 2]
            if value[0] != "string" or op not in ("=", "!=", "=~", "!~"):
                raise ValueError("unexpected matcher in %r" % expr)
            found.append((label, op, unquote(value[1])))
            i += 3
        return found, i + 1

    def skip_to(i, close):     # past the bracket closing the one at toks[i]
        depth, open_ = 0, toks[i][1]
        while True:
            if toks[i][1] == open_:
                depth += 1
            elif toks[i][1] == close:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text.lower() in LIST_KEYWORDS:
            i = skip_to(i + 1, ")") if nxt == "(" else i + 1
        elif kind == "ident" and text.lower() in KEYWORDS:
            i += 1
        elif kind == "ident" and (nxt == "(" or (nxt or "").lower() in ("by", "without")):
            i += 1             # a function, or an aggregation (sum by (...) (...))
        elif kind == "ident":
            found, i = matchers(i + 1) if nxt == "{" else ([], i + 1)
            out.append((text, found))
        elif text == "{":
            found, i = matchers(i)
            names = [v for (l, op, v) in found if l == "__name__" and op == "="]
            out.append((names[0] if names else None, [m for m in found if m[0] != "__name__"]))
        elif text == "[":
            i = skip_to(i, "]")  # a range or a subquery: durations only
        else:
            i += 1
    return out


def load_rules(path):
    exprs, recorded = [], set()
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            exprs.append((rule.get("alert") or rule.get("record"), str(rule["expr"])))
            if "record" in rule:
                recorded.add(rule["record"])
    return exprs, recorded


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+(?:\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def load_samples(paths):
    samples = {}
    for path in paths:
        for line in open(path):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            if m:
                labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in LABEL.findall(m.group(2) or "")}
                samples.setdefault(m.group(1), []).append(labels)
    return samples


def satisfies(labels, found):
    for label, op, value in found:
        have = labels.get(label, "")
        ok = {"=": have == value, "!=": have != value,
              "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


def show(name, found):
    return "%s{%s}" % (name or "", ",".join('%s%s"%s"' % m for m in found))


def main(argv):
    if len(argv) >= 2 and argv[0] == "names":
        exprs, recorded = load_rules(argv[1])
        print("\n".join(sorted({n for _, e in exprs for n, _ in selectors(e) if n})))
        return 0
    if len(argv) < 3 or argv[0] != "check":
        print(__doc__, file=sys.stderr)
        return 2
    exprs, recorded = load_rules(argv[1])
    samples = load_samples(argv[2:])
    problems = []
    for rule, expr in exprs:
        for name, found in selectors(expr):
            if name is None:
                problems.append("%s: a selector without a metric name: %s" % (rule, show(name, found)))
            elif name in recorded or name in PROMETHEUS_OWN:
                continue
            elif name not in samples:
                problems.append("%s: no metric %s in /metrics" % (rule, name))
            elif not any(satisfies(labels, found) for labels in samples[name]):
                problems.append("%s: no series of /metrics matches %s" % (rule, show(name, found)))
    print("\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
