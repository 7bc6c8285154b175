"""Training: the method interface (method.py), SFT (sft.py), GRPO (grpo.py) and what they share.

`tunesmith.train(...)` is a function of the top-level package, but importing any module of this package makes
Python set `tunesmith.train` to the package itself; so the package is callable too and trains the same way.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from tunesmith.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
