"""SkyEye for QGIS: a chat panel and Processing algorithms on a SkyEye server (docs/qgis.md)."""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    """QGIS's entry point: the plugin object for ``iface``."""
    from .plugin import SkyEyePlugin

    return SkyEyePlugin(iface)
