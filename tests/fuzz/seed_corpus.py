#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*)
from the examples, the docs' JSON blocks and the string literals of the tests.

    python3 tests/fuzz/seed_corpus.py        # from the repository's root

Only files named seed-* are replaced; regression-* inputs (a finding's
minimized input, kept when it was fixed) are never touched. Deterministic:
the same sources give the same files. The store corpus needs
tests/fuzz/store_seed.sqlite (docs/testing.md says how it was made).
"""
import hashlib
import json
import os
import re
import struct
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
MAX_FILES = 200          # per target
MAX_BYTES = 16 * 1024    # per file (the seeds stay small; libFuzzer grows them)


# --------------------------------------------------------------- C++ literals

ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'",
           "a": "\a", "b": "\b", "f": "\f", "v": "\v", "?": "?"}


def cpp_strings(path):
    """The string literals of a C++ file, adjacent ones joined, as bytes."""
    src = open(path, encoding="utf-8", errors="surrogateescape").read()
    out, i, n = [], 0, len(src)
    current, last_end = None, -1
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c == "'" and not (i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")):
            # a character literal
            j = i + 1
            while j < n and src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            continue
        m = re.match(r'(u8|u|U|L)?R"([^(\s]{0,16})\(', src[i:i + 40])
        if m and not (i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")):
            delim = ")" + m.group(2) + '"'
            start = i + m.end()
            j = src.find(delim, start)
            if j < 0:
                break
            text = src[start:j].encode("utf-8", "surrogateescape")
            i = j + len(delim)
        elif c == '"':
            j, buf = i + 1, bytearray()
            while j < n and src[j] != '"':
                if src[j] == "\\" and j + 1 < n:
                    e = src[j + 1]
                    if e == "x":
                        k = j + 2
                        while k < n and src[k] in "0123456789abcdefABCDEF":
                            k += 1
                        buf.append(int(src[j + 2:k] or "0", 16) & 0xFF)
                        j = k
                        continue
                    if e in "01234567":
                        k = j + 1
                        while k < n and k < j + 4 and src[k] in "01234567":
                            k += 1
                        buf.append(int(src[j + 1:k], 8) & 0xFF)
                        j = k
                        continue
                    if e == "u" or e == "U":
                        width = 4 if e == "u" else 8
                        buf += chr(int(src[j + 2:j + 2 + width], 16)).encode("utf-8", "surrogatepass")
                        j += 2 + width
                        continue
                    if e == "\n":
                        j += 2
                        continue
                    buf += ESCAPES.get(e, e).encode("utf-8", "surrogateescape")
                    j += 2
                    continue
                buf += src[j].encode("utf-8", "surrogateescape")
                j += 1
            text = bytes(buf)
            i = j + 1
        else:
            if not c.isspace():
                if current is not None:
                    out.append(current)
                    current = None
            i += 1
            continue
        current = text if current is None else current + text
    if current is not None:
        out.append(current)
    return out


def files_under(*parts, ext=".cpp"):
    base = os.path.join(ROOT, *parts)
    if os.path.isfile(base):
        return [base]
    found = []
    for d, _, names in os.walk(base):
        found += [os.path.join(d, x) for x in names if x.endswith(ext)]
    return sorted(found)


def as_json(b):
    try:
        return json.loads(b.decode("utf-8"))
    except Exception:
        return None


def doc_json_blocks():
    blocks = []
    for path in files_under("docs", ext=".md") + [os.path.join(ROOT, "README.md")]:
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"```json\n(.*?)```", text, re.S):
            blocks.append(m.group(1).encode())
    return blocks


# -------------------------------------------------------------- writing

class corpus:
    def __init__(self, target):
        self.dir = os.path.join(CORPUS, target)
        self.items = {}

    def add(self, data, name=None):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if len(data) > MAX_BYTES or data in self.items.values():
            return
        if len(self.items) >= MAX_FILES:
            return
        h = hashlib.sha1(data).hexdigest()[:12]
        self.items["seed-" + (name + "-" if name else "") + h] = data

    def write(self):
        os.makedirs(self.dir, exist_ok=True)
        for f in os.listdir(self.dir):
            if f.startswith("seed-"):
                os.remove(os.path.join(self.dir, f))
        for name, data in sorted(self.items.items()):
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data)
        size = sum(len(d) for d in self.items.values())
        print(f"{os.path.relpath(self.dir, ROOT)}: {len(self.items)} seeds, {size} bytes")


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def walk(v):
    yield v
    if isinstance(v, dict):
        for x in v.values():
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)


# -------------------------------------------------------------- targets

def workflows():
    docs = []
    for path in files_under("examples", ext=".json"):
        docs.append(open(path, "rb").read())
    for b in doc_json_blocks():
        docs.append(b)
    for path in files_under("tests", "unit") + files_under("tests", "system") + \
            files_under("tests", "integration"):
        docs += cpp_strings(path)
    return [d for d in docs if isinstance(as_json(d), dict) and "root" in as_json(d)]


def gen_workflow():
    c = corpus("workflow")
    for d in workflows():
        c.add(d)
    # What the parser refuses, and the edges of its limits.
    c.add('{"name": "a", "root": {"task": "x", "value": {}, "value": {"b": 1}}}', "dupkey")
    c.add('{"name": "a", "max_concurrency": 1e400, "root": {"task": "x", "value": {}}}', "inf")
    c.add("\ufeff" + '{"name": "bom", "root": {"task": "x", "value": {}}}', "bom")
    deep = '{"name": "d", "root": ' + '{"sequence": [' * 63 + '{"task": "a", "value": {}}' + \
        "]}" * 63 + "}"
    c.add(deep, "deep")
    c.add('{"name": "d", "root": ' + '{"sequence": [' * 64 + "]}" * 64 + "}", "toodeep")
    c.write()


def gen_schema():
    c = corpus("schema")
    schemas, values = [], []
    for path in files_under("tests", "unit", "schema_test.cpp") + \
            files_under("tests", "unit", "attempt_builder_test.cpp"):
        for s in cpp_strings(path):
            v = as_json(s)
            if v is None:
                continue
            (schemas if isinstance(v, dict) else values).append(v)
            values.append(v)
    for d in workflows():
        w = as_json(d)
        for key in ("input_schema",):
            if isinstance(w.get(key), dict):
                schemas.append(w[key])
        for s in (w.get("output_schemas") or {}).values():
            schemas.append(s)
        for node in walk(w.get("root")):
            if isinstance(node, dict):
                if isinstance(node.get("output_schema"), dict):
                    schemas.append(node["output_schema"])
                if "value" in node:
                    values.append(node["value"])
    values += [None, True, 0, -0.5, 1e308, 18446744073709551615, -9223372036854775808, "",
               "h\u00e9llo", [], {}, [1, "a", None], {"n": 3, "tags": ["x"]}]
    for i, s in enumerate(schemas):
        for k in range(3):
            v = values[(i * 7 + k * 13) % len(values)]
            c.add(compact(s) + b"\0" + compact(v))
    c.write()


def gen_predicate():
    c = corpus("predicate")
    scope_input = {"dry_run": True, "n": 5, "name": "x", "none": None, "tags": ["a", "b"],
                   "nested": {"deep": {"v": 2.5}}}
    scope_outputs = {"check": {"ok": True, "score": 7, "label": "green", "items": [{"id": 1}]},
                     "empty": {}}
    preds = []
    for s in cpp_strings(os.path.join(ROOT, "tests", "unit", "predicate_test.cpp")):
        v = as_json(s)
        if isinstance(v, dict) and any(k in v for k in ("output", "input", "all", "any", "not")):
            preds.append(v)
    for d in workflows():
        for node in walk(as_json(d).get("root")):
            if isinstance(node, dict):
                for k in ("if", "until", "skip_if"):
                    if isinstance(node.get(k), dict):
                        preds.append(node[k])
    for p in preds:
        c.add(compact(p) + b"\0" + compact(scope_input) + b"\0" + compact(scope_outputs))
    c.add(b'{"not": ' * 63 + b'{"input": "n", "exists": true}' + b"}" * 63 + b"\0{}\0{}", "deep")
    c.write()


HOSTILE = []


def gen_template():
    c = corpus("template")
    src = os.path.join(ROOT, "tests", "unit", "shell_template_test.cpp")
    strings = cpp_strings(src)
    text = open(src, encoding="utf-8").read()
    # The hostile values: the literals of the `hostile` vector.
    start = text.index("const std::vector<std::string> hostile = {")
    end = text.index("};", start)
    hostile = cpp_strings_from_text(text[start:end])
    for v in hostile:
        c.add(b"\0" + v, "value")  # mode 0
    for v in [b"1", b"[1,2]", b'{"a":"b c"}', b"null", b"x" * 3000, b"a\nb\n\n", b"\\\n",
              b"$(id)\n", "\u00e9\u2713".encode()]:
        c.add(b"\0" + v, "value")
    scripts = [s for s in strings if b"{{" in s]
    for path in files_under("tests", "system", "cli_shell_quoting_test.cpp") + \
            files_under("tests", "unit", "template_test.cpp"):
        scripts += [s for s in cpp_strings(path) if b"{{" in s]
    for i, s in enumerate(scripts):
        value = hostile[i % len(hostile)] if hostile else b"x"
        c.add(b"\1" + s + b"\0" + value, "script")  # mode 1
    argvs = [
        [b"sh", b"-c", b"echo {{input.v}}"],
        [b"/bin/sh", b"-ec", b"printf '%s' \"{{input.v}}\""],
        [b"sh", b"-c", b"echo \"$1\"", b"sh", b"{{input.v}}"],
        [b"bash", b"-c", b"echo {{input.v}}"],
        [b"bash", b"-{{input.o}}", b"echo"],
        [b"sh", b"{{input.v}}"],
        [b"sh", b"-o", b"{{input.v}}", b"-c", b"echo"],
        [b"sh", b"-co", b"posix", b"echo {{input.v}}"],
        [b"bash", b"--rcfile", b"{{input.v}}", b"-c", b"echo"],
        [b"sh", b"--", b"{{input.v}}"],
        [b"sh", b"-", b"{{input.v}}"],
        [b"printf", b"%s", b"{{input.v}}"],
        [b"git", b"commit", b"-m", b"{{outputs.a.f}}"],
        [b"{{input.v}}", b"-c", b"echo {{input.w}}"],
        [b"dash", b"-c", b"cat <<EOF\n{{input.v}}\nEOF"],
    ]
    for i, a in enumerate(argvs):
        value = hostile[(i * 5) % len(hostile)] if hostile else b"-x"
        c.add(b"\2" + b"\0".join(a + [value]), "argv")  # mode 2
    c.write()


def cpp_strings_from_text(text):
    tmp = os.path.join(CORPUS, ".tmp-literals.cpp")
    os.makedirs(CORPUS, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        return cpp_strings(tmp)
    finally:
        os.remove(tmp)


def gen_command_output():
    c = corpus("command_output")
    for s in cpp_strings(os.path.join(ROOT, "tests", "unit", "command_test.cpp")):
        if b"{" in s or b"heartbeat" in s or b"```" in s:
            c.add(s)
    for v in [
        b'{"n": 3}\n',
        b"::heartbeat\n::heartbeat {\"step\": 1}\r\n{\"ok\": true}\n",
        b"progress 10%\rprogress 50%\r\n```json\n{\"a\": [1, {\"b\": null}]}\n```\ndone\n",
        b"log {not json} more {\"x\": 1} trailing",
        b"```json\n{\"a\": 1, \"a\": 2}\n```\n",
        b"{\"deep\": " + b"[" * 130 + b"]" * 130 + b"}",
        b"::heartbeat " + b"[" * 600 + b"]" * 600 + b"\n{}",
        b"::heartbeat {\"a\": 1e999}\n",
        b"\xff\xfe{\"bad utf8\": \"\xc3\x28\"}\n{\"ok\": 1}",
        b"{ { { {\"x\": \"}\"} } }",
        b"```python\nprint('{')\n```\n```json\n{\"y\": 2}\n```",
        b"[1, 2, 3]",
        b"\"just a string\"",
    ]:
        c.add(v)
    fake = os.path.join(ROOT, "tests", "fixtures", "agents", "fake-agent")
    if os.path.exists(fake):
        for s in re.findall(rb"```json.*?```", open(fake, "rb").read(), re.S):
            c.add(s)
    c.write()


def gen_agent_answer():
    c = corpus("agent_answer")
    schema = compact({"type": "object", "required": ["summary"],
                      "properties": {"summary": {"type": "string", "minLength": 1}}})
    answers = [s for s in cpp_strings(os.path.join(ROOT, "tests", "unit", "agent_test.cpp"))]
    answers += [
        b"Here is the plan.\n\n```json\n{\"summary\": \"ok\"}\n```\n",
        b"Error: Invalid API key \xc2\xb7 Please run /login",
        b"HTTP 401 Unauthorized",
        b"I could not do it.",
        b"```json\n{\"summary\": 5}\n```",
        b"```json\n{\"summary\": \"x\", \"summary\": \"y\"}\n```",
        "\u00e9" * 500 + "```json\n{}\n```",
        b"\xe2\x9c" * 300 + b"\n" * 50,
    ]
    for i, a in enumerate(answers):
        a = a.encode() if isinstance(a, str) else a
        c.add(a + b"\0" + (schema if i % 2 == 0 else b"") + b"\0" + b"Summarize {{input.v}}.")
    c.write()


def gen_input_bounds():
    c = corpus("input_bounds")
    texts = []
    for name in ("json_parse_test.cpp", "json_bounds_test.cpp", "json_text_test.cpp"):
        texts += cpp_strings(os.path.join(ROOT, "tests", "unit", name))
    texts = [t for t in texts if t.strip()[:1] in (b"{", b"[", b'"') or as_json(t) is not None]
    texts += [b"1e400", b"-0", b"-0.0", b"184467440737095516160", b"[1]\0junk", b"\xef\xbb\xbf{}",
              b'{"a": "\\ud800"}', b'{"a": "\xc0\xaf"}', b"[" * 40 + b"]" * 40,
              b'{"a": 1, "a": 2}', b"[" + b"1," * 600 + b"1]", b'{"' + b"k" * 100 + b'": 1}']
    heads = [bytes([0x40, 0]), bytes([0x80, 0]), bytes([0xC0, 0]), bytes([5, 0]), bytes([0x40, 64])]
    for i, t in enumerate(texts):
        c.add(heads[i % len(heads)] + t)
    c.write()


def gen_store():
    c = corpus("store")
    seed_path = os.path.join(ROOT, "tests", "fuzz", "store_seed.sqlite")
    img = open(seed_path, "rb").read()

    def patch(*edits, cut=0, pick=0):
        out = bytes([0x80 | cut if cut else 0, pick])
        for off, data in edits:
            out += struct.pack("<I", off)[:3] + bytes([len(data)]) + data
        return out

    # Every run of the seed (pick 0-6, 7: the newest listed), both ways (bit 3).
    for pick in range(16):
        c.add(patch(pick=pick), f"intact-pick{pick}")
    damage = [
        (patch(cut=1), "cut-last-page"),
        (patch(cut=64), "cut-half"),
        (patch((16, b"\x00\x02")), "page-size-512-typo"),
        (patch((16, b"\xff\xff")), "page-size"),
        (patch((18, b"\x01\x01")), "rollback-journal"),
        (patch((28, b"\x00\x00\x00\x03")), "page-count"),
        (patch((60, b"\x00\x00\x00\x63")), "user-version-99"),
        (patch((100, b"\x0d")), "root-page-type"),
    ]
    # Inside stored JSON: break it, nest it, make it invalid UTF-8, overflow it.
    for needle, repl, name in [
        (b'{"n":3}', b'{"n":3', "json-unclosed"),
        (b'{"n":3}', b'[[[[[[[', "json-deep"),
        (b'"title"', b'"t\xff\xfee"', "json-bad-utf8"),
        (b'{"step":1}', b'{"s":1e999', "json-inf"),
        (b"finished", b"finishe\x00", "status-nul"),
        (b"hello-1", b"hello-2", "run-id"),
        (b"gate-1", b"\xff\xfe\xfd\xfc\xfb\xfa", "run-id-bytes"),
        (b"approval", b"apprxval", "wait-kind"),
    ]:
        at = img.find(needle)
        if at >= 0:
            damage.append((patch((at, repl)), name))
    # A byte flipped in every 16th page's header.
    for page in range(1, len(img) // 512, 16):
        damage.append((patch((page * 512, b"\x0a"), (page * 512 + 3, b"\xff\xff")), f"page{page}"))
    for i, (data, name) in enumerate(damage):
        pick = (i * 5) % 16
        c.add(data[:1] + bytes([pick]) + data[2:], f"{name}-pick{pick}")
    c.write()


GENERATORS = {
    "workflow": gen_workflow, "schema": gen_schema, "predicate": gen_predicate,
    "template": gen_template, "command_output": gen_command_output,
    "agent_answer": gen_agent_answer, "input_bounds": gen_input_bounds, "store": gen_store,
}

if __name__ == "__main__":
    wanted = sys.argv[1:] or list(GENERATORS)
    for t in wanted:
        GENERATORS[t]()
