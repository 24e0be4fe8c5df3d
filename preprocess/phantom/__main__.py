"""`python -m preprocess.phantom --out DIR --patients N --atlases 5 --seed S --spacing-mm 2`: the demo cohort."""

from __future__ import annotations

import sys
from pathlib import Path

from cache.cli import Command
from preprocess.phantom.settings import PhantomSettings


def generate(settings: PhantomSettings) -> int:
    from preprocess.phantom.cohort import generate_cohort

    print(f"cohort written to {generate_cohort(settings)}")
    return 0


COMMAND = Command("python -m preprocess.phantom",
                  "Write the synthetic thorax PET/CT cohort and atlas bank (demo dataset).", (PhantomSettings,),
                  generate, log_file=lambda settings: Path(settings.out) / "phantom.log")


main = COMMAND.run  # Generate the cohort; failures raise
cli = COMMAND.cli  # for python -m and the console script: a failure is one `error:` line, exit 2 or 1


if __name__ == "__main__":
    sys.exit(cli())
