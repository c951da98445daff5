"""make bundle: write dist/smoke.py, the whole toolkit in one text file to copy or paste.

    python3 tools/bundle.py [--output dist/smoke.py]

The file is smoke.py itself with every module of checks/ embedded as source text and
served by a small import hook placed first on sys.meta_path, so a checks/ directory
wherever it runs cannot shadow it. A module is compiled only when it is imported, as from
the tree, so a one-check run compiles what it uses and no more. Tracebacks name the
embedded file (dist/smoke.py/checks/cli.py) and show its line: the hook answers
linecache through get_source. The output depends on the sources alone: the same tree
gives the same bytes.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "# Not __doc__:"  # smoke.py's line after its version check: the hook goes in before it
FIRST_IMPORT = "import os\n"  # smoke.py's first import: the path guard goes in before it
# A script's directory is sys.path[0], searched before the standard library: a module planted
# beside a shared copy (argparse.py beside /tmp/smoke.py) would run, as root from root's cron.
# The single file needs nothing beside it, so that entry goes before anything is imported
# (-I and -P put none there; pasted on stdin, it is the current directory).
PATH_GUARD = """import sys
if sys.path and not (getattr(sys.flags, "isolated", 0) or getattr(sys.flags, "safe_path", 0)):
    del sys.path[0]  # the script's directory (or, pasted, the current one): nothing of ours is there
"""

HOOK = '''
# ---- the bundle's import hook: the modules of checks/, embedded above as source ----
class _Bundled(object):
    """Finder and loader of the embedded modules (PEP 451), first on sys.meta_path. A script
    gets no cached bytecode, so a module's code is kept, as __pycache__ would keep it, in
    ~/.cache/smoke.py (a directory of our own, 0700), keyed by its source's digest."""

    def __init__(self, sources, where):
        self.sources, self.where, self.cache = sources, where, None

    def find_spec(self, name, path=None, target=None):
        if name not in self.sources:
            return None
        spec_type = type(sys.__spec__)  # importlib.machinery.ModuleSpec, without importing importlib
        package = self.sources[name][0].endswith("__init__.py")
        spec = spec_type(name, self, origin=self.where + "/" + self.sources[name][0], is_package=package)
        spec.has_location = False
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = module.__spec__.origin
        exec(self._code(module.__name__, module.__file__), module.__dict__)

    def get_source(self, name):  # for linecache: a traceback shows the embedded line
        return self.sources[name][2] if name in self.sources else None

    def _code(self, name, origin):
        import marshal
        path, digest, source = self.sources[name]
        cached = self._cached(name, digest)
        if cached:
            try:
                with open(cached, "rb") as fh:
                    code = marshal.loads(fh.read())
                if type(code) is type(self._code.__code__):  # a code object, not whatever the file held
                    return code
            except (OSError, ValueError, EOFError, TypeError):
                pass
        code = compile(source, origin, "exec", dont_inherit=True)
        if cached and not sys.dont_write_bytecode:
            try:
                with open(cached + ".%d" % os.getpid(), "wb") as fh:
                    fh.write(marshal.dumps(code))
                os.replace(cached + ".%d" % os.getpid(), cached)
            except OSError:
                pass
        return code

    def _cached(self, name, digest):
        """The cache file of a module's code, or None when there is no safe place for it."""
        if self.cache is None:
            self.cache = ""
            import binascii
            try:
                base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
                ours = os.path.join(base, "smoke.py")
                directory = os.path.join(ours, sys.implementation.cache_tag)
                os.makedirs(base, exist_ok=True)
                above = os.path.realpath(base)
                while True:  # no one else may rename any of it away: each ours or root's, shut or sticky as /tmp
                    info = os.stat(above)
                    if info.st_uid not in (0, os.getuid()) or (info.st_mode & 0o022 and not info.st_mode & 0o1000):
                        raise OSError("a cache directory others can change")
                    if os.path.dirname(above) == above:
                        break
                    above = os.path.dirname(above)
                for path in (ours, directory):  # each made 0700, and each must be ours alone
                    if not os.path.isdir(path):
                        os.mkdir(path, 0o700)
                infos = [os.lstat(path) for path in (ours, directory)]
                if all(i.st_uid == os.getuid() and not i.st_mode & 0o022 and not os.path.islink(p)
                       for i, p in zip(infos, (ours, directory))):  # nobody else can plant code, or swap it
                    self.cache = os.path.join(directory, "%08x-%d" % (
                        binascii.crc32(self.where.encode("utf-8", "replace")), sys.flags.optimize))
            except (OSError, KeyError, AttributeError, TypeError):
                pass
        return "%s-%s.%s" % (self.cache, name, digest) if self.cache else None


_where = globals().get("__file__") or "<stdin>"
sys.meta_path.insert(0, _Bundled(_SOURCES, _where if _where.startswith("<") else os.path.abspath(_where)))
del _where
# ---- end of the import hook ----

'''


def modules():
    """{module name: (path relative to the root, digest, source)} of checks/, in a fixed order."""
    import hashlib

    found = {}
    for directory, subdirs, files in os.walk(os.path.join(ROOT, "checks")):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.relpath(os.path.join(directory, name), ROOT).replace(os.sep, "/")
            module = path[:-3].replace("/", ".")
            if module.endswith(".__init__"):
                module = module[:-len(".__init__")]
            with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
                text = fh.read()
            found[module] = (path, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], text)
    return dict(sorted(found.items()))


def bundle() -> str:
    with open(os.path.join(ROOT, "smoke.py"), encoding="utf-8") as fh:
        main = fh.read()
    if main.count(MARKER) != 1:
        raise SystemExit("bundle: smoke.py has no single %r line to put the import hook before" % MARKER)
    from checks import __version__  # the tree's own version, for the header
    sources = "".join("    %s: (%s, %s, %s),\n" % (ascii(name), ascii(path), ascii(digest), ascii(text))
                      for name, (path, digest, text) in modules().items())
    head, tail = main.split(MARKER, 1)
    shebang, rest = head.split("\n", 1) if head.startswith("#!") else ("", head)
    if rest.count(FIRST_IMPORT) != 1:
        raise SystemExit("bundle: smoke.py has no single %r line to put the path guard before" % FIRST_IMPORT)
    rest = rest.replace(FIRST_IMPORT, PATH_GUARD + FIRST_IMPORT)
    header = ("%s\n# smoke.py %s as one file: generated by `make bundle` (tools/bundle.py) from smoke.py and checks/.\n"
              "# Generated, do not edit: change the sources and run `make bundle` again.\n" % (shebang, __version__))
    return header + rest + "_SOURCES = {\n" + sources + "}\n" + HOOK + MARKER + tail


def main(argv=None):
    parser = argparse.ArgumentParser(description="write the single-file smoke.py")
    parser.add_argument("--output", default=os.path.join(ROOT, "dist", "smoke.py"))
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    text = bundle()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, args.output)
    print("bundle: %s (%d modules, %d KB)" % (args.output, len(modules()), len(text) // 1024))


if __name__ == "__main__":
    main()
