"""Secrets: which values are secret, every form in which they can reach an output, masking.

A secret is a value written in a secret-named field (`bearer_token`, `basic_auth.password`,
`headers.Authorization`), or a `${VAR}` value whose variable is secret-named
(`API_TOKEN`, `DB_PASSWORD`), marked by the config's `secrets` list or `--secret NAME`, or
that lands in a secret-named field. Other `${VAR}` values (`${NGINX_URL}`) are shown.
Servers echo secrets re-encoded, so each is masked in the forms it travels in too: JSON-
and URL-escaped, base64, and the `user:password` of Basic auth.
"""

from __future__ import annotations

import functools
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Iterable

# Field names whose values are secrets wherever they appear: names that end in a secret
# word at a word boundary (bearer_token, X-Api-Key, db_password; not max_tokens or cookie_count,
# which response JSON is full of). Words, not a regex: that one cost a start-up 0.7 ms to compile.
SECRET_WORDS = ("token", "password", "passwd", "passphrase", "secret", "apikey", "authorization", "credential",
                "credentials", "cookie", "privatekey", "secretkey", "accesskey")
_KEY_OWNERS = ("api", "private", "secret", "access")  # api_key, private-key, secret_key, access_key
# Environment variable names that hold secrets: GITHUB_TOKEN, DB_PASSWORD, AWS_SECRET_ACCESS_KEY,
# STRIPE_KEY, BASIC_AUTH, SESSION_COOKIE; not NGINX_URL, PORT, KEYBOARD_LAYOUT or PWD.
SECRET_NAME = (r"(?i)password|passwd|passphrase|secret|token|credential|api_?key|private_?key"
               r"|(^|[_.-])(key|pass|auth|authorization|cookie|session)s?$")  # compiled on first use
MASK = "***"
# Shorter values would blank out ordinary text ("80" inside "8080"), so they are not masked by value.
MIN_SECRET = 4
_SCHEME = r"^[A-Za-z][A-Za-z0-9-]*\s+(\S.*)$"  # "Bearer abc", "Basic dXNlcjpwdw==" 


@functools.lru_cache(maxsize=4096)  # a report repeats the same few keys thousands of times
def secret_field(name: Any) -> bool:
    words = str(name).lower().replace(".", "_").replace("-", "_").split("_")
    return words[-1] in SECRET_WORDS or (len(words) > 1 and words[-1] == "key" and words[-2] in _KEY_OWNERS)


def secret_name(name: str) -> bool:
    return bool(re.search(SECRET_NAME, name))


def forms(value: str) -> set:
    """The value and the encodings in which a server or a URL may hand it back.

    JSON and URL escapes to two levels deep (an echo service returns the JSON body it was
    sent inside its own JSON), base64, and hex escapes in either case.
    """
    import base64  # here, not at start-up: most runs have no secret
    import json
    from urllib.parse import quote, quote_plus

    escapes = (lambda v: json.dumps(v)[1:-1], lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
               lambda v: quote(v, safe=""), quote, quote_plus)
    once = {escape(value) for escape in escapes}
    found = {value} | once | {escape(form) for form in once for escape in escapes}
    found.add(base64.b64encode(value.encode("utf-8", "surrogatepass")).decode())
    found |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in found}
    credential = re.match(_SCHEME, value)
    if credential:  # an Authorization value: the credential alone travels too
        found |= forms(credential.group(1))
    return found


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

    def add_basic_auth(self, username: str, password: str) -> None:
        """Basic auth sends base64("user:password"), which contains neither value as such."""
        self.add(password)
        self.add("%s:%s" % (username, password))

    def secret_variable(self, name: str) -> bool:
        return name in self.names or secret_name(name)

    def redact(self, obj: Any) -> Any:
        """A copy of obj with secret values, and the values of secret-named keys, masked."""
        if isinstance(obj, str):
            if self._masked is None:  # longest first, so a form inside a longer one cannot leave a tail
                every = {form for value in self.values for form in forms(value) if len(form) >= MIN_SECRET}
                self._masked = sorted(every, key=len, reverse=True)
            for form in self._masked:
                if form in obj:
                    obj = obj.replace(form, MASK)
            return obj
        if isinstance(obj, dict):
            return {k: MASK if secret_field(k) and v else self.redact(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact(v) for v in obj]
        return obj


def collect_fields(obj: Any, secrets: Secrets, secret: bool = False) -> None:
    """Register every value written under a secret-named field, and Basic-auth pairs."""
    if isinstance(obj, dict):
        basic = obj.get("basic_auth")
        if isinstance(basic, dict) and isinstance(basic.get("password"), str):
            secrets.add_basic_auth(str(basic.get("username", "")), basic["password"])
        for key, value in obj.items():
            collect_fields(value, secrets, secret or secret_field(key))
    elif isinstance(obj, list):
        for value in obj:
            collect_fields(value, secrets, secret)
    elif secret:
        secrets.add(obj)
