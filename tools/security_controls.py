"""Rewrite the acknowledgement table of ``docs/security-controls.md`` from the real app.

``python -m tools.security_controls docs/security-controls.md`` synthesizes the app twice (plain, and
with the delivery pipeline) and writes every cdk-nag acknowledgement with its reason. It lives outside
the library because it builds this repository's app: the library never imports ``app`` or ``stacks``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ai_factory.platform.nag import Acknowledgement, acknowledgements, render_document_table
from app import build_app
from stacks.pipeline_stack import CONTEXT_KEY


def main(argv: list[str]) -> int:
    """``python -m tools.security_controls DOC``: rewrite DOC's acknowledgement table from the real app."""
    if len(argv) != 1:
        print("usage: python -m tools.security_controls docs/security-controls.md", file=sys.stderr)
        return 2
    settings = {
        "repo": "my-org/ai-factory",
        "branch": "main",
        "connectionArn": (
            "arn:aws:codeconnections:us-east-1:111122223333:connection/0f1e2d3c-aaaa-bbbb-cccc-111122223333"
        ),
    }
    acks: list[Acknowledgement] = []
    for context in ({}, {CONTEXT_KEY: settings}):
        with tempfile.TemporaryDirectory() as out:
            app = build_app(outdir=out, context=context)
            try:
                app.synth()
            except Exception as exc:  # unacknowledged findings: the table is still written
                print(f"warning: synth failed (run the nag tests to see why): {exc}"[:300], file=sys.stderr)
            # The pipeline's stages deploy copies of the app's stacks: listed once, from the plain app.
            acks.extend(acknowledgements(app, nested_stages=False))
    path = Path(argv[0])
    path.write_text(render_document_table(path.read_text(), acks))
    print(f"{path}: {len(set(acks))} acknowledgements")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
