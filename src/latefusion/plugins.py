"""Plugins: your own methods, encoders and data sets on the command line, without editing latefusion.

A plugin is a Python module that registers entries when imported:

    from latefusion.models import ENCODERS

    @ENCODERS.register("my-encoder")
    class MyEncoder(torch.nn.Module): ...

The command line imports plugins before it runs a command, in two ways:

  * `--import MODULE` (repeatable, before or after the command's name): a module name
    (`my_package.encoders`; the current folder is searched too) or the path of a `.py` file;
  * every entry point of the `latefusion.plugins` group of the installed packages, e.g. in a
    plugin package's pyproject.toml:

        [project.entry-points."latefusion.plugins"]
        my-encoders = "my_package.encoders"

A plugin that fails to import, calls sys.exit() while imported, or is a folder without __init__.py
(which would import and register nothing) stops the command with an error naming the module (and
the entry point); `latefusion --debug` shows the traceback. From Python, import the module yourself.
docs/examples/my_plugin.py is a complete plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

from .errors import UserError

ENTRY_POINT_GROUP = "latefusion.plugins"


class PluginError(UserError):
    """A plugin module that cannot be found or fails while it is imported."""


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def import_plugin(name: str) -> ModuleType:
    """Import one plugin: a module name, or the path of a .py file."""
    path = Path(name)
    if name.endswith(".py"):
        if not path.is_file():
            raise PluginError(f"--import {name}: no such file")
        module_name = f"latefusion_plugin_{path.stem}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as error:
            del sys.modules[module_name]
            raise PluginError(f"--import {name}: {failure(error, 'importing the plugin file failed')}") from error
        return module
    if path.is_dir() and ("/" in name or name in (".", "..")):
        raise PluginError(f"--import {name}: a folder; --import takes a module's name (my_package.encoders) or the path of a "
                          f".py file (my_folder/my_plugin.py)")
    cwd = str(Path.cwd())
    added = cwd not in sys.path and "" not in sys.path
    if added:  # `latefusion` started as a script does not search the current folder; a plugin beside the user is found
        sys.path.append(cwd)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise PluginError(f"--import {name}: no module named {error.name!r} (searched the current folder and "
                              f"the Python path; a file is given by its path, ending in .py)") from error
        raise PluginError(f"--import {name}: {failure(error, 'importing the plugin failed')}") from error
    except (Exception, SystemExit) as error:
        raise PluginError(f"--import {name}: {failure(error, 'importing the plugin failed')}") from error
    if getattr(module, "__file__", None) is None and hasattr(module, "__path__"):  # a namespace package: a folder without __init__.py
        inside = sorted(p.stem for folder in module.__path__ for p in Path(folder).glob("*.py"))
        hint = f"; its modules: {', '.join(f'{name}.{m}' for m in inside)}" if inside else ""
        raise PluginError(f"--import {name}: a folder without __init__.py: importing it runs no code and registers nothing; "
                          f"import the module inside it that registers your entries{hint}")
    return module


def failure(error: BaseException, what: str) -> str:
    """Why importing a plugin failed; a plugin calling sys.exit() is named as such, not obeyed."""
    if isinstance(error, SystemExit):
        return (f"the plugin called sys.exit({error.code!r}) while it was imported; a plugin module should only define and "
                f"register its entries (move the code that exits under `if __name__ == \"__main__\":`)")
    return f"{what}: {describe(error)}"


def import_plugins(names: list[str]) -> list[ModuleType]:
    return [import_plugin(name) for name in names]


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Import every entry point of `group`; returns the names of the entry points loaded."""
    loaded = []
    for entry in metadata.entry_points(group=group):
        try:
            entry.load()
        except (Exception, SystemExit) as error:
            raise PluginError(f"plugin {entry.name!r} ({group} entry point of package "
                              f"{getattr(entry.dist, 'name', '?')}) failed to import module {entry.module!r}: "
                              f"{failure(error, 'the import failed')}") from error
        loaded.append(entry.name)
    return loaded
