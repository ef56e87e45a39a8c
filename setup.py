"""Packaging glue that pyproject.toml cannot express (see its [tool.setuptools] comment).

`files/` stays at the top of the repository (the image and a checkout read it
there); a built distribution carries it inside the `ops` package as
`ops/_files/`, where ops/render.py finds it after a non-editable install.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
FILES = ROOT / "files"
PACKAGED = ("ops", "_files")


class build_py_with_files(build_py):
    """build_py, plus files/ copied to <build_lib>/ops/_files/."""

    def _files(self) -> list[tuple[str, str]]:
        return [(str(src), str(Path(self.build_lib, *PACKAGED, src.relative_to(FILES))))
                for src in sorted(FILES.rglob("*"))
                if src.is_file() and "__pycache__" not in src.parts]

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return      # an editable install imports ops from the checkout, which reads files/ itself
        for src, dst in self._files():
            self.mkpath(str(Path(dst).parent))
            self.copy_file(src, dst)

    def get_outputs(self, include_bytecode=1):
        extra = [] if getattr(self, "editable_mode", False) else [dst for _, dst in self._files()]
        return super().get_outputs(include_bytecode) + extra


setup(
    cmdclass={"build_py": build_py_with_files},
    # setuptools' default build folder is ./build, which is the image builder's here.
    options={"build": {"build_base": "out/setuptools"}},
)
