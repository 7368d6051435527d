"""Write the Mojo side of every KernelABI the package declares (kernels/aura_kernels/<op>/abi.mojo, or its ``module``).

    python tools/gen_abi.py            # rewrite the generated files
    python tools/gen_abi.py --check    # exit 1 and list the stale ones
"""

import sys
from pathlib import Path

import aura_lab  # noqa: F401  (imports every op module, which declare their ABIs)
from aura_lab._abi import KernelABI

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


def main(argv) -> int:
    stale = [abi for abi in KernelABI.registry.values()
             if not abi.mojo_path(KERNELS).is_file() or abi.mojo_path(KERNELS).read_text() != abi.mojo_source()]
    if "--check" in argv:
        for abi in stale:
            print(f"stale: {abi.mojo_path(KERNELS)}")
        return 1 if stale else 0
    for abi in stale:
        print(f"wrote {abi.write(KERNELS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
