"""The web console: static pages served by `moorage serve` under /console/ (docs/console.md).

The console is plain ES modules and CSS shipped in the wheel (`static/`), read once at start; it calls
the same APIs as boto3 (SageMaker, CloudWatch Logs, CloudWatch) from the browser. It holds no
authority of its own: with `--auth sigv4` the browser signs every call with the access key the user
typed (SigV4 in `static/js/sigv4.js`), so each action is one that key's role may take, and the static
files themselves carry nothing secret. Without authentication the console is served only on a
loopback bind (or when MOORAGE_CONSOLE=on says so), and the Host / cross-site guard in front of every
route still applies to it (httpd/hosts.py).
"""

from moorage.console.site import ConsoleSite, console_enabled

__all__ = ["ConsoleSite", "console_enabled"]
