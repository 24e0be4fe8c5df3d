"""`python -m preprocess.phantom --out DIR --patients N --atlases 5 --seed S --spacing-mm 2`: the demo cohort."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cache.settings import format_settings, parse_settings
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(PhantomSettings, argv, prog="python -m preprocess.phantom",
                              description="Write the synthetic thorax PET/CT cohort and atlas bank (demo dataset).")
    print(format_settings(settings))
    try:
        out = generate_cohort(settings)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"cohort written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
