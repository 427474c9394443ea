"""One encoder and a linear head trained on one modality alone. These runs are UME's members and
UMT's teachers, and their probes are the reference for how much a modality can teach on its own."""

from pydantic import Field

from ..config import Section
from ..errors import ConfigError
from ..style import Style
from .base import Method
from .registry import METHODS


class UnimodalOptions(Section):
    modality: str = Field(..., description="the modality to train on")


@METHODS.register("unimodal")
class Unimodal(Method):
    name = "unimodal"
    Options = UnimodalOptions
    group = "unimodal"
    style = Style("Uni-modal", "#0072B2", "o")

    def modalities(self) -> list[str]:
        modality = self.options.modality
        if modality not in self.spec.modality_names:
            raise ConfigError(
                f"method.options.modality: data set {self.spec.name!r} has no modality {modality!r}; "
                f"expected one of {self.spec.modality_names}"
            )
        return [modality]
