"""Secrets: which values are secret, every form in which they can reach an output, masking.

A secret is a value written in a secret-named field (`bearer_token`, `basic_auth.password`,
`headers.Authorization`), or a `${VAR}` value whose variable is secret-named
(`API_TOKEN`, `DB_PASSWORD`), marked by the config's `secrets` list or `--secret NAME`, or
that lands in a secret-named field. Other `${VAR}` values (`${NGINX_URL}`) are shown.
Servers echo secrets re-encoded, so each is masked in the forms it travels in too (see
forms()), and the `user:password` of Basic auth; and an excerpt cut inside a secret has
the secret's start masked.
"""

from __future__ import annotations

import functools
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Iterable

# Field names whose values are secrets wherever they appear: names whose last word is a
# secret word (bearer_token, X-Api-Key, db_password, accessToken; not max_tokens or
# cookie_count, which response JSON is full of). Words, not a regex: that one cost a
# start-up 0.7 ms to compile.
SECRET_WORDS = ("token", "password", "passwd", "passphrase", "secret", "apikey", "authorization", "credential",
                "credentials", "cookie", "privatekey", "secretkey", "accesskey")
_KEY_OWNERS = ("api", "private", "secret", "access")  # api_key, private-key, secret_key, access_key
# Environment variable names are judged by their last word too (MAX_TOKENS and TOKENIZER_DIR
# are shown), with the words of environment conventions added: MYSQL_PWD, GITHUB_PAT,
# STRIPE_KEY, BASIC_AUTH, SESSION; a last word that ends in a secret word (PGPASSWORD,
# GHTOKEN) counts too. PWD and OLDPWD are directories.
_NAME_WORDS = ("key", "pwd", "pass", "pat", "auth", "session", "dsn")
_NAME_ENDINGS = ("password", "passwd", "passphrase", "secret", "token")
_NOT_SECRET_NAMES = ("PWD", "OLDPWD")
# Words that qualify a name rather than say what it holds, and keys that are no secret.
_QUALIFIERS = ("prod", "production", "staging", "stage", "dev", "development", "test", "qa", "uat", "live",
               "sandbox", "old", "new", "prev", "previous", "next", "current", "primary", "secondary", "base",
               "backup", "alt")
_PLAIN_KEYS = ("public", "sort", "cache", "primary", "partition", "foreign", "page", "routing", "hash", "range",
               "lookup", "index", "shard", "group", "idempotency", "dedup", "object", "s3", "map")
MASK = "***"
# Shorter values would blank out ordinary text ("80" inside "8080"), so they are not masked by value.
MIN_SECRET = 4
_FEW_CUTS_ABOVE, _LAST_CUTS = 4096, 4  # beyond 4096 characters, only the last 4 cuts are ours
_CUT = "\u2026"  # how every excerpt of outside text ends: a secret's start may stand before it
# Charsets a server may declare that are not supersets of ASCII: text decoded with them hides a secret.
_NOT_ASCII_CHARSETS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "cp500", "cp037", "cp1140")
_SCHEME = r"^[A-Za-z][A-Za-z0-9-]*\s+(\S.*)$"  # "Bearer abc", "Basic dXNlcjpwdw=="


def _words(name: Any):
    """The words of a name: snake_case, kebab-case, dotted or camelCase (accessToken)."""
    text = str(name)
    if not text.islower():  # most keys are lower case: no regex for them. accessToken, APIToken, JWTSecret:
        text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", text)
    return text.lower().replace(".", "_").replace("-", "_").split("_")


@functools.lru_cache(maxsize=4096)  # a report repeats the same few keys thousands of times
def secret_field(name: Any) -> bool:
    words = _words(name)
    return words[-1] in SECRET_WORDS or (len(words) > 1 and words[-1] == "key" and words[-2] in _KEY_OWNERS)


def secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret: by its last word, after
    any qualifier words (DB_PASSWORD_PROD, API_KEY_V2, GITHUB_TOKEN_2, SECRET_KEY_BASE)."""
    if name.upper() in _NOT_SECRET_NAMES:
        return False
    words = _words(name)
    while len(words) > 1 and (words[-1] in _QUALIFIERS or words[-1].isdigit() or re.fullmatch(r"v\d+", words[-1])):
        words.pop()
    last = words[-1]
    if last == "key" and len(words) > 1 and words[-2] in _PLAIN_KEYS:
        return False
    return secret_field("_".join(words)) or last in _NAME_WORDS or last.endswith(_NAME_ENDINGS)


def forms(value: str) -> set:
    """The value and the encodings in which a server, a URL or our own quoting may hand it back.

    JSON and URL escapes to two levels deep (an echo service returns the JSON body it was
    sent inside its own JSON), with the variants other encoders write (upper-case hex,
    Go's \\u0026 for & < > +, JavaScript's encodeURIComponent, JSON's \\/); base64 with
    and without padding, standard and URL-safe; HTML escapes, named or numeric; UTF-8 read
    as Latin-1 or Windows-1252 (a wrong charset); shell and Python quoting (a default
    name, an error message). Bytes that are not UTF-8 (from the environment) are kept as
    the bytes they were.
    """
    import base64  # here, not at start-up: most runs have no secret
    import html
    import json
    import shlex
    from urllib.parse import quote, quote_plus

    def url(safe):
        return lambda v: quote(v, safe=safe, errors="surrogateescape")

    escapes = (lambda v: json.dumps(v)[1:-1], lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
               url(""), url("/"), url("!'()*~"), lambda v: quote_plus(v, errors="surrogateescape"),
               lambda v: re.sub("[&<>+]", lambda m: "\\u%04x" % ord(m.group()), json.dumps(v)[1:-1]))
    once = {_tried(escape, value) for escape in escapes}
    found = {value} | once | {_tried(escape, form) for form in once for escape in escapes}
    raw = value.encode("utf-8", "surrogateescape")
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        found |= {encoded, encoded.rstrip("=")}
    found |= _misaligned_base64(raw)
    found |= {value.upper(), value.lower()}  # an upper-cased method, a lower-cased header name
    found |= _every_char_escaped(value, raw)
    found |= {_tried(lambda v: v.encode("idna").decode("ascii"), value)}  # a host name's xn-- form
    for charset in _NOT_ASCII_CHARSETS:  # a server that declares one: its reading of the secret's bytes
        for skip in range(2 if charset.startswith("utf-16") else 1):
            found.add(_tried(lambda v: (b"\0" * skip + v).decode(charset, "replace")[skip:].rstrip("\ufffd"), raw))
    escaped = html.escape(value)
    found |= {escaped, html.escape(value, quote=False), escaped.replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
              shlex.quote(value), repr(value)[1:-1], ascii(value)[1:-1], raw.decode("latin-1"),
              raw.decode("cp1252", "replace")}
    found |= {form.replace("/", "\\/") for form in list(found) if form}
    found |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in found if form}
    found |= {re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group()[2:].upper(), form) for form in found if form}
    credential = re.match(_SCHEME, value)
    if credential:  # an Authorization value: the credential alone travels too
        found |= forms(credential.group(1))
    found.discard(None)
    return found


def _misaligned_base64(raw: bytes) -> set:
    """The base64 characters that only the secret's bytes decide, wherever it starts inside
    a longer encoded text (at an offset of 0, 1 or 2 bytes mod 3, with more after it)."""
    import base64

    found = set()
    for skip in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * skip + raw).decode()
            whole = (skip + len(raw)) // 3 * 4  # groups of three bytes that end inside the secret
            middle = text[4 if skip else 0:whole]
            if len(middle) >= 8:  # shorter pieces would mask unrelated base64
                found.add(middle)
    return found


def _every_char_escaped(value: str, raw: bytes) -> set:
    """Encoders that escape every character, not just the special ones: hex, %XX for each
    byte, &#N; and &#xN; for each character, \\uXXXX for each character."""
    hexed = raw.hex()
    percent = "".join("%%%02X" % byte for byte in raw)
    return {hexed, hexed.upper(), percent, percent.lower(),
            "".join("&#%d;" % ord(char) for char in value), "".join("&#x%x;" % ord(char) for char in value),
            "".join("\\u%04x" % ord(char) for char in value if ord(char) < 0x10000),
            "".join("\\u%04X" % ord(char) for char in value if ord(char) < 0x10000)}


def _tried(escape, value: str):
    """escape(value), or None where that encoding cannot hold it."""
    try:
        return escape(value)
    except (UnicodeError, ValueError):
        return None


_LEAVES = frozenset((str, int, float, bool, type(None)))


class Secrets:
    """Values that must never reach a report, a log line or an error message."""

    def __init__(self, values: Iterable[str] = (), names: Iterable[str] = ()):
        self.values: set = set()  # as written; masking covers their forms() too
        self.names = set(names)  # environment variables marked secret (--secret, the config's list)
        self._masked = None
        for value in values:
            self.add(value)

    def add(self, value: Any) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET:
            self.values.add(value)
            self._masked = None

    def add_url(self, url: str) -> None:
        """A receiver's URL (a webhook's, a ping's) is its credential, but for its host: the
        path, the query and the fragment are masked, so a problem still says which receiver
        it was (a URL with a user or password in it is refused before)."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        for part in (parts.path.strip("/"), parts.query, parts.fragment):
            self.add(part)
            self.add(unquote(part))  # written %53ECRET, it is SECRET to a receiver that says it back

    def add_basic_auth(self, username: str, password: str) -> None:
        """Basic auth sends base64("user:password"), which contains neither value as such."""
        self.add(password)
        self.add("%s:%s" % (username, password))

    def secret_variable(self, name: str) -> bool:
        return name in self.names or secret_name(name)

    def redact(self, obj: Any) -> Any:
        """A copy of obj with secret values masked: in text and keys, inside numbers, as
        the start of a secret left at a cut (…), and as the value of any secret-named key."""
        if isinstance(obj, str):
            if not self.values or len(obj) < MIN_SECRET:
                return obj
            for form in self._forms():
                if form in obj:
                    obj = obj.replace(form, MASK)
            return self._mask_cut_starts(obj) if _CUT in obj else obj
        if isinstance(obj, dict):
            if not self.values:  # only secret-named keys to mask: text, keys and numbers are as they are
                return {k: MASK if v and secret_field(k) else v if type(v) in _LEAVES else self.redact(v)
                        for k, v in obj.items()}
            return {self.redact(k) if isinstance(k, str) else k: MASK if secret_field(k) and v else self.redact(v)
                    for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            if not self.values:
                return [v if type(v) in _LEAVES else self.redact(v) for v in obj]
            return [self.redact(v) for v in obj]
        if isinstance(obj, (int, float)) and not isinstance(obj, bool) and self.values:
            digits = str(int(obj)) if isinstance(obj, float) and obj.is_integer() else str(obj)
            if any(value in digits or value in str(obj) for value in self.values):
                return MASK  # {"pin": 98765432.0}: a secret that JSON made a number
        return obj

    def _forms(self) -> list:
        """Every form of every secret, longest first, so a form inside a longer one leaves no tail."""
        if self._masked is None:
            every = {form for value in self.values for form in forms(value) if len(form) >= MIN_SECRET}
            self._masked = sorted(every, key=len, reverse=True)
        return self._masked

    def _mask_cut_starts(self, text: str) -> str:
        """An excerpt cut inside a secret ends in its first characters: mask those too.

        For each cut, the longest end of the text before it that starts a form; each form
        is tried only where its first character stands, so a long secret costs little.
        """
        pieces = text.split(_CUT)
        # Our cuts end a value ("…", "… (9 more characters)"); a long text can hold only a few of
        # them, near its end, but a server can send millions of "…": those are not tried.
        first = 0 if len(text) <= _FEW_CUTS_ABOVE else max(0, len(pieces) - 1 - _LAST_CUTS)
        for i, before in enumerate(pieces[:-1]):
            if i < first:
                continue
            head = before.rstrip("\n")  # the command cap's mark starts a line: "…\n… (9 more bytes)"
            longest = 0
            for form in self._forms():
                window = head[-(len(form) - 1):] if len(form) > 1 else ""
                at = window.find(form[0])
                while at != -1 and len(window) - at > longest:
                    if form.startswith(window[at:]):
                        longest = len(window) - at
                        break
                    at = window.find(form[0], at + 1)
            if longest >= 3:
                pieces[i] = head[:-longest] + MASK + before[len(head):]
        return _CUT.join(pieces)


def collect_fields(obj: Any, secrets: Secrets, secret: bool = False, env: bool = False) -> None:
    """Register every value written under a secret-named field (under `env`, a secret-named
    variable), and Basic-auth pairs."""
    if isinstance(obj, dict):
        basic = obj.get("basic_auth")
        if isinstance(basic, dict) and isinstance(basic.get("password"), str):
            secrets.add_basic_auth(str(basic.get("username", "")), basic["password"])
        for key, value in obj.items():
            inner = secret or secret_field(key) or env and secret_name(str(key))
            if inner or type(value) not in _LEAVES:  # a plain value under a plain name holds nothing
                collect_fields(value, secrets, inner, key == "env")
    elif isinstance(obj, list):
        for value in obj:
            if secret or type(value) not in _LEAVES:
                collect_fields(value, secrets, secret)
    elif secret:
        secrets.add(obj)
