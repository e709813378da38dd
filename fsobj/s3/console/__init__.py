"""The web console: one page and its script, served by the S3 front end under
`/_console/` (no bucket's name begins with `_`, so the path clashes with none), to anyone:
they hold no data. The script signs each request it makes with the access key its user
signs in with, as any S3 client does, so the console can do nothing that its user could
not do with awscli; the secret stays in the tab's session storage, gone with the tab."""

from __future__ import annotations

from importlib import resources

PREFIX = "/_console"
_FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "console.js": ("console.js", "text/javascript; charset=utf-8"),
    "console.css": ("console.css", "text/css; charset=utf-8"),
}
# The page runs its own script alone, talks to this origin alone, and is framed by none.
_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def page(path: str) -> tuple[int, dict[str, str], bytes] | None:
    """The console's answer (status, headers, body) to a GET of `path`; None for a path
    that is not the console's."""
    if path == PREFIX:
        return 301, {"location": PREFIX + "/"}, b""
    if not path.startswith(PREFIX + "/"):
        return None
    found = _FILES.get(path[len(PREFIX) + 1 :])
    if found is None:
        return 404, {"content-type": "text/plain"}, b"not part of the console\n"
    name, content_type = found
    body = resources.files(__package__).joinpath(name).read_bytes()
    return 200, {"content-type": content_type, **_HEADERS}, body
