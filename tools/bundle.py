"""make bundle: write dist/smoke.py, the whole toolkit in one text file to copy or paste.

    python3 tools/bundle.py [--output dist/smoke.py]

What Python compiles on every start of a script is the whole script, so the file is mostly
data, which is cheap to parse, and little code:

1. smoke.py's first lines (its docstring and version check: any Python parses the whole
   file, 2.7 included, and then says it is too old), with the path guard before the first
   import;
2. BOOT, a short function: it finds the cache directory, checks that no one else can
   change it, and runs the rest of the loader from the code kept there (else compiles it);
3. LOADER, the rest of the loader, as a string: a finder first on sys.meta_path (a checks/
   directory where it runs cannot shadow it) that serves the embedded modules, compiling
   each on first use and keeping its code in the cache keyed by its source's digest, as
   __pycache__ would; then it runs smoke.py itself, embedded the same way;
4. the index (path:digest:size of each file) and the data: smoke.py and every module of
   checks/, their texts joined, deflated and base64-encoded. A warm start unmarshals code
   and decompresses nothing; a cold one decompresses once and compiles what it imports.

Every line is printable ASCII of at most 200 characters, none starts with "~" (an ssh
escape), so the file pastes into a here-document in any shell and terminal (dash and
busybox sh cut lines at 4 KB). Tracebacks name the embedded file (dist/smoke.py/checks/
cli.py, dist/smoke.py/smoke.py) and show its line: the finder answers linecache through
get_source, and before 3.13 an excepthook prints through the traceback module, which asks
linecache. The output depends on the sources (and zlib's deflate) alone: the same tree
gives the same bytes.
"""

import argparse
import base64
import hashlib
import os
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "# The rest is checks/main.py"  # smoke.py's line after its version check: the first lines end before it
FIRST_IMPORT = "import sys\n"  # smoke.py's first import: the path guard goes in before it
WIDTH = 192  # characters of data per line (at most 200, so any terminal and shell take the line whole)
PIECE = 40  # lines of data per string literal: Python's tokenizer copies less than for one long string
# A script's directory is sys.path[0], searched before the standard library: a module planted
# beside a shared copy (argparse.py beside /tmp/smoke.py) would run, as root from root's cron.
# The single file needs nothing beside it, so that entry goes before anything is imported
# (-I and -P put none there; pasted on stdin, it is the current directory).
PATH_GUARD = """import sys
if sys.path and not (getattr(sys.flags, "isolated", 0) or getattr(sys.flags, "safe_path", 0)):
    del sys.path[0]  # the script's directory (or, pasted, the current one): nothing of ours is there
"""

# The only code Python compiles on every start besides smoke.py's first lines, so short. Python 2.7
# parses it too. The cache's directories must be ours alone (smoke.py/ and its tag, not links), and
# each directory above them ours or root's and shut or sticky: a file there is code we run.
BOOT = '''


def _smoke_bundle(scope, loader, digest, line, index, data):
    """Run smoke.py from the files embedded below: index names them (path:digest:size, smoke.py
    first), data holds their texts (joined, deflated, base64) and loader, the rest of this loader
    from line on, serves them as modules. Its code and theirs are kept in ~/.cache/smoke.py, and
    read only where no one else can change a directory on the way."""
    import marshal
    import os
    where = scope.get("__file__") or "<stdin>"
    where = where if where[0] == "<" else os.path.abspath(where)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    cache = "%s/smoke.py/%s/%x-%d-" % (base, sys.implementation.cache_tag, int.from_bytes(
        where.encode("utf-8", "surrogateescape"), "big") % 18446744073709551557, sys.flags.optimize)

    def safe():
        try:
            for path in base + "/smoke.py", cache[:cache.rindex("/")]:
                info = os.lstat(path)
                if info.st_uid != os.getuid() or info.st_mode & 0o170022 != 0o040000:
                    return False
            path = os.path.realpath(base)
            while True:
                info = os.stat(path)
                if info.st_uid not in (0, os.getuid()) or info.st_mode & 0o022 and not info.st_mode & 0o1000:
                    return False
                if path == "/":
                    return True
                path = os.path.dirname(path)
        except (OSError, ValueError, AttributeError):
            return False

    ours, code = safe(), None
    if ours:
        try:
            with open(cache + "loader." + digest, "rb") as fh:
                code = marshal.loads(fh.read())
        except (OSError, ValueError, EOFError, TypeError):
            pass
    fresh = type(code) is not type(safe.__code__) and compile("\\n" * (line - 1) + loader, where, "exec")
    exec(fresh or code, {"scope": scope, "where": where, "cache": cache, "ours": ours, "safe": safe,
                         "index": index, "data": data, "fresh": fresh, "digest": digest, "__name__": "_smoke"})


'''

# The rest of the loader: text in the file, so cheap to parse, and compiled only on a first start
# (with its lines numbered as in the file, so tracebacks show them). No backslash, no triple quote.
LOADER = '''# ---- the rest of the loader: compiled on a first start, then read from the cache ----
import marshal
import os
import sys

files, texts, at = {}, [], 0
for entry in index.split():  # name: (path, digest, start, end)
    entry = entry.split(":")
    files[entry[0][:-3].replace("/", ".").replace(".__init__", "") if files else "__main__"] = (
        entry[0], entry[1], at, at + int(entry[2]))
    at += int(entry[2])


def text(name):
    if not texts:
        import binascii
        import zlib
        texts.append(zlib.decompress(binascii.a2b_base64(data), -15))
    return texts[0][files[name][2]:files[name][3]].decode("utf-8")


def keep(cached, found):
    if not sys.dont_write_bytecode:
        try:
            with open(cached + ".%d" % os.getpid(), "wb") as fh:
                fh.write(marshal.dumps(found))
            os.replace(cached + ".%d" % os.getpid(), cached)
        except OSError:
            pass


def code(name):
    cached = ours and cache + name + "." + files[name][1]
    if cached:
        try:
            with open(cached, "rb") as fh:
                found = marshal.loads(fh.read())
            if type(found) is type(code.__code__):  # a code object, not whatever the file held
                return found
        except (OSError, ValueError, EOFError, TypeError):
            pass
    found = compile(text(name), where + "/" + files[name][0], "exec", dont_inherit=True)
    if cached:
        keep(cached, found)
    return found


class Bundled(object):
    # Finder and loader (PEP 451) of the embedded modules, first on sys.meta_path so that a checks/
    # directory where it runs cannot shadow them; smoke.py's loader too, for linecache.

    def find_spec(self, name, path=None, target=None):
        if name not in files or name == "__main__":
            return None
        spec = type(sys.__spec__)(name, self, origin=where + "/" + files[name][0],
                                  is_package=files[name][0].endswith("__init__.py"))
        spec.has_location = False
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = module.__spec__.origin
        exec(code(module.__name__), module.__dict__)

    def get_source(self, name):  # a traceback shows the embedded line; smoke.py's by any other name
        return text(name if name in files else "__main__")


def excepthook(kind, value, trace):  # before 3.13 the interpreter's own reads lines from files only
    import traceback
    traceback.print_exception(kind, value, trace)


if not ours and cache[0] == "/":  # a first start: the cache's directories, each 0700 (never relative to here)
    try:
        os.makedirs(os.path.dirname(os.path.dirname(os.path.dirname(cache))), exist_ok=True)
        for path in os.path.dirname(os.path.dirname(cache)), os.path.dirname(cache):
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
        ours = safe()
    except OSError:
        pass
if ours and fresh:
    keep(cache + "loader." + digest, fresh)
if sys.excepthook is sys.__excepthook__ and sys.version_info < (3, 13):
    sys.excepthook = excepthook
scope["__loader__"] = Bundled()
sys.meta_path.insert(0, scope["__loader__"])
exec(code("__main__"), scope)
'''


def files():
    """[(path relative to the root, text)]: smoke.py, then checks/ in a fixed order."""
    found = [("smoke.py", read("smoke.py"))]
    for directory, subdirs, names in os.walk(os.path.join(ROOT, "checks")):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.relpath(os.path.join(directory, name), ROOT).replace(os.sep, "/")
                found.append((path, read(path)))
    return found


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return fh.read()


def words_in_lines(words, width):
    """words joined by spaces in lines of at most width characters."""
    out = [""]
    for word in words:
        if out[-1] and len(out[-1]) + 1 + len(word) > width:
            out.append("")
        out[-1] += (" " if out[-1] else "") + word
    return "\n".join(out)


def data_literals(data):
    """data in lines of WIDTH characters, in string literals of PIECE lines (Python joins them)."""
    rows = [data[i:i + WIDTH] for i in range(0, len(data), WIDTH)]
    if len(rows) > 1 and len(rows[-1]) < 16:  # no short last line (one a here-document could end at)
        last = rows.pop()
        both = rows.pop() + last  # in their order: the data is the rows joined
        rows += [both[:len(both) // 8 * 4], both[len(both) // 8 * 4:]]
    return '\n"""\n"""\n'.join("\n".join(rows[i:i + PIECE]) for i in range(0, len(rows), PIECE))


def bundle() -> str:
    embedded = files()
    main = embedded[0][1]
    if main.count(MARKER) != 1:
        raise SystemExit("bundle: smoke.py has no single %r line to end the bundle's first lines before" % MARKER)
    head = main.split(MARKER, 1)[0]
    shebang, rest = head.split("\n", 1) if head.startswith("#!") else ("", head)
    if rest.count(FIRST_IMPORT) != 1:
        raise SystemExit("bundle: smoke.py has no single %r line to put the path guard before" % FIRST_IMPORT)
    if '"""' in LOADER or "'''" in LOADER or "\\" in LOADER:
        raise SystemExit("bundle: LOADER goes in a string literal: no triple quote, no backslash")
    from checks import __version__  # the tree's own version, for the header
    # "coding: utf-8" spares Python checking that each line is UTF-8 (it is ASCII)
    text = ("%s\n# smoke.py %s as one file (coding: utf-8), generated by make bundle (tools/bundle.py) from\n"
            "# smoke.py and checks/. Generated, do not edit: change the sources and run make bundle again.\n"
            % (shebang, __version__) + rest.replace(FIRST_IMPORT, PATH_GUARD + FIRST_IMPORT).rstrip("\n")
            + BOOT + '_smoke_bundle(globals(), """')
    line = text.count("\n") + 1  # LOADER's first line
    digest = hashlib.sha256(("%d\n%s" % (line, LOADER)).encode("utf-8")).hexdigest()[:16]
    blobs = [source.encode("utf-8") for _, source in embedded]
    index = ["%s:%s:%d" % (path, hashlib.sha256(blob).hexdigest()[:16], len(blob))
             for (path, _), blob in zip(embedded, blobs)]
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)  # raw deflate (no header): the loader passes -15
    data = base64.b64encode(packer.compress(b"".join(blobs)) + packer.flush()).decode("ascii")
    return text + LOADER + '""", "%s", %d, """\n%s\n""", """\n%s\n""")\n' % (
        digest, line, words_in_lines(index, WIDTH), data_literals(data))


def main(argv=None):
    parser = argparse.ArgumentParser(description="write the single-file smoke.py")
    parser.add_argument("--output", default=os.path.join(ROOT, "dist", "smoke.py"))
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from checks import fsio

    text = bundle()
    if os.path.abspath(args.output) == parser.get_default("output"):  # make bundle's dist/, missing in a fresh clone
        os.makedirs(os.path.dirname(parser.get_default("output")), exist_ok=True)
    try:  # as smoke.py writes its files: never through another user's link, nor over their file in /tmp
        fsio.replace(args.output, text.encode("utf-8"), 0o755)
    except OSError as exc:
        raise SystemExit("bundle: cannot write %s: %s" % (args.output, fsio.why(exc)))
    print("bundle: %s (%d files, %d KB, %d lines of at most %d characters)" % (
        args.output, len(files()), len(text) // 1024, text.count("\n"), max(map(len, text.split("\n")))))


if __name__ == "__main__":
    main()
