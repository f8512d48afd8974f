"""Runs a gmond python module natively, as the reference for host/tests/gmond_python.rs.

    python3 gmond_native.py MODULE.py PARAMS_JSON

The module is translated from Python 2 exactly as wasmond's interpreter does
(wasmond_py2, with fissix from target/python-deps on PYTHONPATH) and imported as
gmond would; metric_init gets the params. The first line written is the descriptors
(JSON, without call_back; the first of a duplicate name kept, as gmond does); then,
for each metric name read from stdin, one line: {"value": ...} or {"error": ...}.
The test asks both this process and the sandboxed module in lockstep, so both
sample the kernel's counters at nearly the same moments.
"""

import json
import os
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../guest-modules/gmond-python"))
import wasmond_py2  # noqa: E402


def load(path):
    name = os.path.splitext(os.path.basename(path))[0]
    with open(path) as f:
        text = f.read()
    try:
        code = compile(text, path, "exec", dont_inherit=True)
    except SyntaxError:
        translated, _ = wasmond_py2.translate(text, name)
        code = compile(translated, path, "exec", dont_inherit=True)
    module = types.ModuleType(name)
    module.__file__ = path
    for name, value in wasmond_py2.BUILTINS.items():
        module.__dict__.setdefault(name, value)
    sys.modules[name] = module
    exec(code, module.__dict__)
    return module


def main():
    module = load(sys.argv[1])
    descriptors = module.metric_init(json.loads(sys.argv[2]))
    call_backs = {}
    out = []
    for d in descriptors:
        if d["name"] in call_backs:
            continue
        call_backs[d["name"]] = d["call_back"]
        out.append({k: (v if isinstance(v, (int, float, str, list)) else str(v))
                    for k, v in d.items() if k != "call_back"})
    print(json.dumps(out), flush=True)
    for line in sys.stdin:
        name = line.strip()
        try:
            value = call_backs[name](name)
            print(json.dumps({"value": value}), flush=True)
        except Exception as error:  # noqa: BLE001 - reported to the test
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)


if __name__ == "__main__":
    main()
