"""Bundles conf/ and schemas/ into the wheel as omicslake/_bundled/ so that
``spark-submit --py-files omicslake.whl`` finds them on every node (see omicslake.resources).
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders directly
            return
        for name in ("conf", "schemas"):
            dst = Path(self.build_lib) / "omicslake" / "_bundled" / name
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(ROOT / name, dst)


setup(cmdclass={"build_py": BuildPyWithData})
