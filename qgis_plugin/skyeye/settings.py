"""The plugin's settings: server URL, timeout and the folder the server may read, in the user's
QGIS settings (`QgsSettings`, never the project file); API keys in QGIS's authentication
manager (encrypted under the user's master password), referenced by their config ids.

A local server started from the plugin (`local_server`) sets ``local_url`` and its own key
(``local_authcfg``) while it runs: requests then go there, and the remote URL and key stay as
they were for when it stops."""

from __future__ import annotations

from dataclasses import dataclass, fields

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

from .client import SkyEyeClient

PREFIX = "skyeye/"
AUTH_NAME = "SkyEye server key"
LOCAL_AUTH_NAME = "SkyEye local server key"


@dataclass
class Settings:
    """url: the server (http://host:8000); timeout: seconds per request; shared_folder: a local
    folder the server reads at the same path (its --allow-files): rasters under it are sent as
    paths, others uploaded; authcfg: the auth manager config holding the key. local_*: the
    local server (its Python, model, allowed folder, last port; its URL and key while it runs)."""

    url: str = "http://127.0.0.1:8000"
    timeout: float = 120.0
    shared_folder: str = ""
    authcfg: str = ""
    local_python: str = ""
    local_model: str = "skyeye-tiny"
    local_folder: str = ""
    local_port: int = 0
    local_url: str = ""
    local_authcfg: str = ""

    @classmethod
    def load(cls) -> Settings:
        s = QgsSettings()
        values = {}
        for f in fields(cls):
            default = f.default
            value = s.value(PREFIX + f.name, default)
            values[f.name] = type(default)(value if value not in (None, "") else default)
        return cls(**values)

    def save(self) -> None:
        s = QgsSettings()
        for f in fields(self):
            s.setValue(PREFIX + f.name, getattr(self, f.name))
        s.sync()

    # ------------------------------------------------------------------ the server in use
    def server_url(self) -> str:
        """The URL requests go to: the local server's while it runs, else the remote one."""
        return self.local_url or self.url

    def key(self) -> str | None:
        """The API key of the server in use, from the auth manager (None when none is stored)."""
        authcfg = self.local_authcfg if self.local_url else self.authcfg
        if not authcfg:
            return None
        config = QgsAuthMethodConfig()
        manager = QgsApplication.authManager()
        if not manager.loadAuthenticationConfig(authcfg, config, True):
            return None
        return config.config("password") or None

    def store_key(self, key: str, local: bool = False) -> bool:
        """Store ``key`` in the auth manager (a Basic config; QGIS encrypts it) as the remote
        server's key, or the local server's; False when the auth manager cannot store it (no
        master password)."""
        current = self.local_authcfg if local else self.authcfg
        manager = QgsApplication.authManager()
        config = QgsAuthMethodConfig("Basic")
        if current and not manager.loadAuthenticationConfig(current, config, True):
            current = ""  # removed from the auth manager meanwhile: store a new one
        config.setName(LOCAL_AUTH_NAME if local else AUTH_NAME)
        config.setMethod("Basic")
        config.setConfig("username", "skyeye")
        config.setConfig("password", key)
        if current:
            ok = manager.updateAuthenticationConfig(config)
        else:
            result = manager.storeAuthenticationConfig(config)
            # PyQGIS returns (ok, config) or just ok, depending on the version.
            ok, config = result if isinstance(result, tuple) else (result, config)
        if ok:
            if local:
                self.local_authcfg = config.id()
            else:
                self.authcfg = config.id()
        return bool(ok)

    def client(self) -> SkyEyeClient:
        return SkyEyeClient(self.server_url(), self.key(), self.timeout)
