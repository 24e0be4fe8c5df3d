"""lnstage: weakly supervised mediastinal lymph node staging on PET/CT (Engelson et al. 2026, reimplemented)."""

from setuptools import find_packages, setup

setup(
    name="lnstage",
    version="0.1.0",
    description="Lymph node station mapping, classification and N-staging on PET/CT without pixel-level labels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["cache", "cache.*", "configs", "configs.*", "preprocess", "preprocess.*",
                                    "train", "train.*", "evaluate", "evaluate.*"]),
    package_data={"configs": ["*.toml", "**/*.toml", "**/*.json"]},
    install_requires=[
        "torch>=2.2",
        "numpy>=1.24",
        "h5py>=3.8",
        "SimpleITK>=2.3",
        "pydicom>=2.4",
        "numba>=0.58",
        "scipy>=1.10",
        "pandas>=2.0",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "highdicom>=0.22",  # DICOM SEG of the stations (python -m evaluate predict on a DICOM CT)
        "tqdm>=4.65",
        "openpyxl>=3.1",  # clinical tables in XLSX (python -m preprocess.import_tcia)
        "tomli>=2.0; python_version<'3.11'",
    ],
    # beside `python -m preprocess` etc.: the same commands, with the same flags and exit codes
    entry_points={"console_scripts": [
        "lnstage-preprocess = preprocess.__main__:cli",
        "lnstage-train = train.__main__:cli",
        "lnstage-evaluate = evaluate.__main__:cli",
        "lnstage-predict = evaluate.__main__:batch_cli",
        "lnstage-export-model = train.__main__:export_cli",
        "lnstage-cache = cache.__main__:cli",
    ]},
    extras_require={
        "dev": ["pytest>=7.4", "ruff>=0.5"],
        "bench": ["monai>=1.3", "torchio>=0.19"],  # tested with monai 1.6.1, torchio 1.2.1
    },
)
