"""The extension point of `assistant`: pluggy hook specifications, the plugin manager and the
built-in plugins will live here (see ../shared/ARCHITECTURE.md, "Plugins")."""
