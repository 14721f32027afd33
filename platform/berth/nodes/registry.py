"""Moved to berth.runtime.registry (the registry is an infrastructure seam beside the container engine).

Only until berth.deploys.pipeline imports these names from berth.runtime.registry (its owner switches it in the
same refactor); then this file goes.
"""

from berth.runtime.registry import RegistryError, app_image_push, registry_enabled

__all__ = ["RegistryError", "app_image_push", "registry_enabled"]
