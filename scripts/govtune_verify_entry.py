"""Entry point of the single-file `govtune-verify` binary (scripts/build-verifier-binary)."""

import sys

from verifier.cli import verify_main

if __name__ == "__main__":
    sys.exit(verify_main())
