"""The plugin's settings: server URL, timeout and the folder the server may read, in the user's
QGIS settings (`QgsSettings`, never the project file); the API key in QGIS's authentication
manager (encrypted under the user's master password), referenced by its config id."""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

from .client import SkyEyeClient

PREFIX = "skyeye/"
AUTH_NAME = "SkyEye server key"


@dataclass
class Settings:
    """url: the server (http://host:8000); timeout: seconds per request; shared_folder: a local
    folder the server reads at the same path (its --allow-files): rasters under it are sent as
    paths, others uploaded; authcfg: the auth manager config holding the key."""

    url: str = "http://127.0.0.1:8000"
    timeout: float = 120.0
    shared_folder: str = ""
    authcfg: str = ""

    @classmethod
    def load(cls) -> Settings:
        s = QgsSettings()
        return cls(
            url=str(s.value(PREFIX + "url", cls.url)),
            timeout=float(s.value(PREFIX + "timeout", cls.timeout)),
            shared_folder=str(s.value(PREFIX + "shared_folder", "") or ""),
            authcfg=str(s.value(PREFIX + "authcfg", "") or ""),
        )

    def save(self) -> None:
        s = QgsSettings()
        s.setValue(PREFIX + "url", self.url)
        s.setValue(PREFIX + "timeout", self.timeout)
        s.setValue(PREFIX + "shared_folder", self.shared_folder)
        s.setValue(PREFIX + "authcfg", self.authcfg)

    def key(self) -> str | None:
        """The API key from the auth manager (None when none is stored)."""
        if not self.authcfg:
            return None
        config = QgsAuthMethodConfig()
        manager = QgsApplication.authManager()
        if not manager.loadAuthenticationConfig(self.authcfg, config, True):
            return None
        return config.config("password") or None

    def store_key(self, key: str) -> bool:
        """Store ``key`` in the auth manager (a Basic config; QGIS encrypts it); False when the
        auth manager cannot store it (no master password)."""
        manager = QgsApplication.authManager()
        config = QgsAuthMethodConfig("Basic")
        if self.authcfg:
            manager.loadAuthenticationConfig(self.authcfg, config, True)
        config.setName(AUTH_NAME)
        config.setMethod("Basic")
        config.setConfig("username", "skyeye")
        config.setConfig("password", key)
        if self.authcfg:
            ok = manager.updateAuthenticationConfig(config)
        else:
            result = manager.storeAuthenticationConfig(config)
            # PyQGIS returns (ok, config) or just ok, depending on the version.
            ok, config = result if isinstance(result, tuple) else (result, config)
        if ok:
            self.authcfg = config.id()
        return bool(ok)

    def client(self) -> SkyEyeClient:
        return SkyEyeClient(self.url, self.key(), self.timeout)
