"""Test-only hook: with WPS_TEST_DISABLE_RESTORE=1, `Trainer._restore` becomes a no-op in this
process, so every restart trains from step 0. tests/conftest.py puts this folder first on PYTHONPATH
(for the subprocesses and SLURM jobs the tests start) when that variable is set; the resume tests must
then fail. Used only to prove those tests can tell a resume from a restart (docs/reliability.md).
"""

import os
import sys

if os.environ.get("WPS_TEST_DISABLE_RESTORE") == "1":
    import importlib.abc
    import importlib.util

    _TARGET = "worldpm_scaling.train.loop"

    def _disable(module) -> None:
        module.Trainer._restore = lambda self: None
        sys.stderr.write("restore_hook: Trainer._restore disabled (WPS_TEST_DISABLE_RESTORE=1)\n")

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != _TARGET:
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is None or spec.loader is None:
                return spec
            loader, run = spec.loader, spec.loader.exec_module

            def exec_module(module):
                run(module)
                _disable(module)

            loader.exec_module = exec_module
            return spec

    if _TARGET in sys.modules:
        _disable(sys.modules[_TARGET])
    else:
        sys.meta_path.insert(0, _Finder())
