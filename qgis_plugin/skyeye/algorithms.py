"""Processing algorithms (toolbox, graphical modeler, batch mode): "Ask SkyEye" and "Analyze whole
scene", each a job on the SkyEye server (`/processes`): progress from the job, cancel deletes it,
a failure is a `QgsProcessingException` with the server's one-line message (the Processing log
shows it; no traceback). Output layers are written only once the job has succeeded. The job is
remembered (`jobs`) until then, so that a QGIS closed meanwhile can load its results later with
"Load SkyEye job results"."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingProvider,
    QgsWkbTypes,
)

from .client import JobCancelled, JobFailed, SkyEyeClientError
from .jobs import forget, job_collections, remember, remembered, status_or_none
from .layers import MASK_STYLE, features_layer
from .rasters import image_input
from .settings import Settings

ASK_DEFAULT = "Show me where the water is with a mask."


class _JobAlgorithm(QgsProcessingAlgorithm):
    """Shared parts: the client from the settings, the job run with progress and cancel, the
    polygons written to the OUTPUT sink."""

    def group(self) -> str:
        return "SkyEye"

    def groupId(self) -> str:
        return "skyeye"

    _job: tuple[str, str] | None = None  # (server URL, job id) while it is remembered

    def _run(
        self, process: str, inputs: dict[str, Any], feedback: Any, name: str = ""
    ) -> dict[str, Any]:
        settings = Settings.load()
        client, url = settings.client(), settings.server_url()

        def progress(percent: float, message: str) -> None:
            feedback.setProgress(percent)
            if message:
                feedback.setProgressText(message)

        def submitted(job_id: str) -> None:
            remember(url, job_id, process, name or process)
            self._job = (url, job_id)

        try:
            results = client.run_job(process, inputs, progress, feedback.isCanceled, 0.5, submitted)
        except (JobCancelled, JobFailed):
            self._forget()  # gone from the server, or nothing to load
            raise
        feedback.pushInfo(f"SkyEye: {results.get('answer')}")
        return results

    def _forget(self) -> None:
        if self._job is not None:
            forget(*self._job)
            self._job = None

    def _sink(self, parameters, context, collection: dict[str, Any] | None, key="OUTPUT") -> str:
        polygons = features_layer(collection, "SkyEye mask", MASK_STYLE)
        sink, dest = self.parameterAsSink(
            parameters,
            key,
            context,
            polygons.fields(),
            QgsWkbTypes.MultiPolygon,
            QgsCoordinateReferenceSystem("EPSG:4326"),
        )
        if sink is None:
            raise QgsProcessingException("cannot create the output layer")
        for feature in polygons.getFeatures():
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        return dest

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:
        try:
            outputs = self._process(parameters, context, feedback)
            self._forget()  # its results are written: nothing left to offer back
            return outputs
        except SkyEyeClientError as err:
            feedback.reportError(str(err), fatalError=True)
            raise QgsProcessingException(str(err)) from None

    def _process(self, parameters, context, feedback) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


class AskAlgorithm(_JobAlgorithm):
    """One question about a raster layer (or an extent of it); the mask as polygons."""

    def name(self) -> str:
        return "ask"

    def displayName(self) -> str:
        return "Ask SkyEye"

    def shortHelpString(self) -> str:
        return (
            "Asks the SkyEye server one question about the raster layer (or the extent given), "
            "sent at its native resolution. The answer's masks become polygons with the phrase "
            "and area_ha; the answer is in the log and the ANSWER output."
        )

    def createInstance(self) -> AskAlgorithm:
        return AskAlgorithm()

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        self.addParameter(QgsProcessingParameterString("QUESTION", "Question", ASK_DEFAULT))
        self.addParameter(
            QgsProcessingParameterExtent("EXTENT", "Area (default: the whole layer)", optional=True)
        )
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Mask polygons"))
        self.addOutput(QgsProcessingOutputString("ANSWER", "Answer"))
        self.addOutput(QgsProcessingOutputNumber("AREA_HA", "Mask area (ha)"))
        self.addOutput(QgsProcessingOutputString("JOB_ID", "Job id"))

    def _process(self, parameters, context, feedback) -> dict[str, Any]:
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        extent = None
        if parameters.get("EXTENT"):
            extent = self.parameterAsExtent(parameters, "EXTENT", context, layer.crs())
            extent = None if extent.isEmpty() else extent
        settings = Settings.load()
        image = image_input(layer, extent, layer.crs() if layer else None, settings.shared_folder)
        question = self.parameterAsString(parameters, "QUESTION", context)
        results = self._run("ask", {"image": image, "question": question}, feedback, layer.name())
        extension = results["result"]["skyeye"]
        dest = self._sink(parameters, context, extension.get("masks_geojson"))
        return {
            "OUTPUT": dest,
            "ANSWER": results.get("answer"),
            "AREA_HA": results.get("area_ha"),
            "JOB_ID": results["jobID"],
        }


class AnalyzeSceneAlgorithm(_JobAlgorithm):
    """A whole scene window by window on the server (`skyeye.scene`): polygons and the mask."""

    def name(self) -> str:
        return "analyze_scene"

    def displayName(self) -> str:
        return "Analyze whole scene"

    def shortHelpString(self) -> str:
        return (
            "Runs the whole raster layer through SkyEye on the server, window by window at its "
            "native resolution, as a job (progress here; cancel deletes it). A file under the "
            "folder the server reads (settings) is sent as a path, others are uploaded."
        )

    def createInstance(self) -> AnalyzeSceneAlgorithm:
        return AnalyzeSceneAlgorithm()

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Scene"))
        self.addParameter(QgsProcessingParameterString("PROMPT", "What to find", ASK_DEFAULT))
        integer = QgsProcessingParameterNumber.Integer
        self.addParameter(
            QgsProcessingParameterNumber("WINDOW", "Window (px)", integer, 512, False, 16)
        )
        self.addParameter(
            QgsProcessingParameterNumber("OVERLAP", "Overlap (px)", integer, 64, False, 0)
        )
        self.addParameter(
            QgsProcessingParameterNumber("BATCH", "Windows per batch", integer, 8, False, 1)
        )
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Mask polygons"))
        self.addParameter(
            QgsProcessingParameterRasterDestination("MASK", "Mask (GeoTIFF)", optional=True)
        )
        self.addOutput(QgsProcessingOutputString("ANSWER", "Answer"))
        self.addOutput(QgsProcessingOutputNumber("AREA_HA", "Mask area (ha)"))
        self.addOutput(QgsProcessingOutputString("JOB_ID", "Job id"))

    def _process(self, parameters, context, feedback) -> dict[str, Any]:
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        settings = Settings.load()
        inputs = {
            "image": image_input(layer, None, None, settings.shared_folder),
            "prompt": self.parameterAsString(parameters, "PROMPT", context),
            "window": self.parameterAsInt(parameters, "WINDOW", context),
            "overlap": self.parameterAsInt(parameters, "OVERLAP", context),
            "batch": self.parameterAsInt(parameters, "BATCH", context),
        }
        results = self._run("analyze-scene", inputs, feedback, layer.name())
        client = settings.client()
        hrefs = {link["title"]: link["href"] for link in results.get("links", [])}
        collection = job_collections(client, results)[0]
        out = {
            "OUTPUT": self._sink(parameters, context, collection),
            "ANSWER": results.get("answer"),
            "AREA_HA": results.get("area_ha"),
            "JOB_ID": results["jobID"],
        }
        mask = self.parameterAsOutputLayer(parameters, "MASK", context)
        if mask and "mask.tif" in hrefs:
            client.download(hrefs["mask.tif"], mask)
            out["MASK"] = mask
        return out


class LoadJobAlgorithm(_JobAlgorithm):
    """The results of a job started earlier (e.g. before QGIS was closed) as layers."""

    def name(self) -> str:
        return "load_job"

    def displayName(self) -> str:
        return "Load SkyEye job results"

    def shortHelpString(self) -> str:
        return (
            "Loads the mask polygons of a SkyEye job that finished on the server, e.g. one "
            "started before QGIS was closed (the SkyEye panel lists them). Empty job id: the "
            "oldest remembered job of the server in the settings."
        )

    def createInstance(self) -> LoadJobAlgorithm:
        return LoadJobAlgorithm()

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterString("JOB_ID", "Job id", "", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Mask polygons"))
        polygons = QgsProcessing.TypeVectorPolygon
        self.addParameter(
            QgsProcessingParameterFeatureSink("BOXES", "Boxes", polygons, None, True, False)
        )
        self.addOutput(QgsProcessingOutputString("ANSWER", "Answer"))
        self.addOutput(QgsProcessingOutputNumber("AREA_HA", "Mask area (ha)"))

    def _process(self, parameters, context, feedback) -> dict[str, Any]:
        settings = Settings.load()
        client, url = settings.client(), settings.server_url()
        job_id = self.parameterAsString(parameters, "JOB_ID", context).strip()
        if not job_id:
            jobs = remembered(url)
            if not jobs:
                raise SkyEyeClientError(f"no remembered SkyEye job for {url}: give a job id")
            job_id = jobs[0]["id"]
        status = status_or_none(client, job_id)
        if status is None:
            forget(url, job_id)
            raise SkyEyeClientError(f"job {job_id} is no longer on the server; it was forgotten")
        if status["status"] != "successful":
            if status["status"] in ("failed", "dismissed"):
                forget(url, job_id)
            raise SkyEyeClientError(
                f"job {job_id} is {status['status']} ({status.get('progress') or 0:.0f} %): "
                f"{status.get('message') or 'its results are not ready yet'}"
            )
        self._job = (url, job_id)
        results = client.results(job_id)
        masks, boxes = job_collections(client, results)
        out = {
            "OUTPUT": self._sink(parameters, context, masks),
            "ANSWER": results.get("answer"),
            "AREA_HA": results.get("area_ha"),
        }
        if parameters.get("BOXES") and boxes:
            out["BOXES"] = self._sink(parameters, context, boxes, "BOXES")
        return out


class SkyEyeProvider(QgsProcessingProvider):
    """The "SkyEye" group of the Processing toolbox."""

    def id(self) -> str:
        return "skyeye"

    def name(self) -> str:
        return "SkyEye"

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(AskAlgorithm())
        self.addAlgorithm(AnalyzeSceneAlgorithm())
        self.addAlgorithm(LoadJobAlgorithm())
