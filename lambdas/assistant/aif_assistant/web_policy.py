"""The page's security headers: one definition for CloudFront's response headers policy
(``GovernedAssistant``) and for ``ai-factory serve --assistant``, so the local page runs under the same
Content-Security-Policy the deployed one does (a test in a real browser would catch a violation)."""

from __future__ import annotations

from collections.abc import Sequence

HSTS_MAX_AGE_S = 63_072_000  # two years, the preload list's minimum is one
WEB_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


def content_security_policy(connect_sources: Sequence[str] = ()) -> str:
    """Scripts, styles and data only from the page's own origin; ``connect_sources`` adds origins the
    page may call (the Cognito domain's token endpoint); no frames, plugins or foreign forms."""
    connect = " ".join(["'self'", *connect_sources])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'; object-src 'none'; upgrade-insecure-requests"
    )


def security_headers(connect_sources: Sequence[str] = (), *, https: bool = True) -> dict[str, str]:
    """The headers every response of the page carries (HSTS only over HTTPS, as browsers ignore it
    otherwise; the local server speaks plain HTTP on loopback)."""
    csp = content_security_policy(connect_sources)
    if not https:
        csp = csp.replace("; upgrade-insecure-requests", "")
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if https:
        headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE_S}; includeSubDomains; preload"
    return headers
