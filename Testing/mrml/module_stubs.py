"""Import ``LuDoseResponse/LuDoseResponse.py`` headless, so its logic (the console API) runs on slicer-core.

slicer-core lacks the application-only modules the module file imports: ``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper`` and ``slicer.i18n`` (slicer-notes §4). Minimal stand-ins are put in
``sys.modules`` for the import only: base classes that do nothing, validators that are ignored, a
``parameterPack`` that makes keyword-constructible records with the class defaults (None for nodes, []
for lists), and ``tr`` returning its text. The logic's own code, the bridge and the library are real.
The widget and the parameter node's GUI binding need Qt and are not exercised.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import typing
from pathlib import Path

MODULE_FILE = Path(__file__).resolve().parents[2] / "LuDoseResponse" / "LuDoseResponse.py"


class _Base:
    def __init__(self, parent=None):
        self.parent = parent


def _record(cls):
    """A stand-in parameterPack: keyword construction, class defaults, [] for lists, None otherwise."""
    hints = typing.get_type_hints(cls, include_extras=True)

    def __init__(self, **values):
        for name, hint in hints.items():
            default = getattr(cls, name, [] if typing.get_origin(hint) is list else None)
            setattr(self, name, values.pop(name, list(default) if isinstance(default, list) else default))
        if values:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(values)}")

    cls.__init__ = __init__
    return cls


def _stubModules() -> dict[str, types.ModuleType]:
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        setattr(slm, name, type(name, (_Base,), {}))
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = _record
    wrapper.parameterPack = _record
    for name in ("Choice", "Minimum", "Maximum", "WithinRange", "Default"):
        setattr(wrapper, name, lambda *args, **kwargs: None)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    return {"slicer.ScriptedLoadableModule": slm, "slicer.parameterNodeWrapper": wrapper, "slicer.i18n": i18n}


def importModuleFile():
    """The LuDoseResponse module file, imported with the stand-ins (removed again afterwards)."""
    import slicer

    stubs = _stubModules()
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("LuDoseResponse", MODULE_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
        for name in stubs:
            attribute = name.split(".", 1)[1]
            if getattr(slicer, attribute, None) is stubs[name]:
                delattr(slicer, attribute)
    return module
