#!/usr/bin/env python3
"""What systemd would run for one instance of a template unit, as shell words.

  unit_exec.py UNIT INSTANCE RUNTIME_ROOT

prints, tab-separated:
  runtime_dir  RUNTIME_ROOT/<RuntimeDirectory=>   (systemd creates it; %t = RUNTIME_ROOT)
  user         User=
  pre          env -i <the service's environment> <ExecStartPre= argv>   (shell-quoted)
  start        env -i <the service's environment> <ExecStart= argv>      (shell-quoted)
  kill_signal  KillSignal= as SIGNAME (systemd's default: SIGTERM)
  kill_mode    KillMode= (default: control-group): who gets kill_signal at
               a stop, the main process (mixed, process) or every process
               of the unit (control-group); SIGKILL follows for the rest
  stop_timeout TimeoutStopSec= in seconds (default: 90, DefaultTimeoutStopSec)

The environment follows systemd.exec(5): PATH, then every Environment=
assignment in order, then every EnvironmentFile= in order (a later one wins;
"-" before the path: a missing file is skipped).  Specifiers: %i, %I (the
instance), %t (RUNTIME_ROOT), %%.  Anything else this does not model
(another specifier, $VAR in a command, a command prefix such as "-" or "+",
several commands in one line) is refused rather than run differently from
systemd.  tests/it_ops.sh runs conf/abacus@.service's commands with it, as
the current user: there is no systemd to start the unit here.
"""
import re
import shlex
import sys


def expand(value, instance, runtime):
    def one(m):
        c = m.group(1)
        if c in ("i", "I"):
            return instance
        if c == "t":
            return runtime
        if c == "%":
            return "%"
        raise SystemExit("unit_exec: specifier %%%s is not modelled" % c)
    return re.sub(r"%(.)", one, value)


def service_section(path):
    entries, section = [], None
    for raw in open(path):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if line.endswith("\\"):
            raise SystemExit("unit_exec: continuation lines are not modelled")
        if section == "[Service]":
            key, _, value = line.partition("=")
            entries.append((key.strip(), value.strip()))
    return entries


def env_file(path, optional):
    try:
        text = open(path).read()
    except FileNotFoundError:
        if optional:
            return []
        raise SystemExit("unit_exec: EnvironmentFile %s is missing (systemd would not start the unit)" % path)
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.append((key.strip(), value))
    return out


def command(value):
    if value[:1] in "-+!:@" or "$" in value or " ; " in value:
        raise SystemExit("unit_exec: command %r is not modelled" % value)
    return shlex.split(value)


def kill_signal(value):
    name = value.upper()
    if re.fullmatch(r"[A-Z][A-Z0-9]*", name) and not name.startswith("SIG"):
        name = "SIG" + name
    if not re.fullmatch(r"SIG[A-Z][A-Z0-9]*", name):
        raise SystemExit("unit_exec: KillSignal=%s is not modelled (use a signal name)" % value)
    return name


def seconds(value):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min)?", value)
    if not m:
        raise SystemExit("unit_exec: TimeoutStopSec=%s is not modelled (use N, Ns or Nmin)" % value)
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def main(unit, instance, runtime):
    entries = [(k, expand(v, instance, runtime)) for k, v in service_section(unit)]
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for key, value in entries:
        if key == "Environment":
            for word in shlex.split(value):
                k, _, v = word.partition("=")
                env[k] = v
    for key, value in entries:
        if key == "EnvironmentFile":
            optional = value.startswith("-")
            env.update(env_file(value.lstrip("-"), optional))
    words = ["env", "-i"] + ["%s=%s" % kv for kv in env.items()]
    found = dict(entries)
    for key, value in entries:
        if key == "RuntimeDirectory":
            print("runtime_dir\t%s/%s" % (runtime, value))
        elif key == "User":
            print("user\t%s" % value)
        elif key in ("ExecStartPre", "ExecStart"):
            label = "pre" if key == "ExecStartPre" else "start"
            print("%s\t%s" % (label, " ".join(shlex.quote(w) for w in words + command(value))))
    if "ExecStart" not in found:
        raise SystemExit("unit_exec: no ExecStart=")
    mode = found.get("KillMode", "control-group")
    if mode not in ("control-group", "mixed", "process"):
        raise SystemExit("unit_exec: KillMode=%s is not modelled" % mode)
    print("kill_signal\t%s" % kill_signal(found.get("KillSignal", "SIGTERM")))
    print("kill_mode\t%s" % mode)
    print("stop_timeout\t%d" % seconds(found.get("TimeoutStopSec", "90")))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(*sys.argv[1:])
