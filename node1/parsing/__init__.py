"""Human parsing: CIHP-20 label maps built from the pose, the person mask and the face detector.

Public face:
    parse_person(image, landmarks, mask, device="cpu") -> ParseResult
        image (H, W, 3) uint8 RGB; landmarks (33, 4) [x px, y px, z, visibility] and mask (H, W) uint8
        from node1.pose.estimate_pose; device: a local torch device or a gvirtus RemoteDevice.
        ParseResult.parse: (H, W) uint8 CIHP labels at the photo's resolution.
    ParsingModule                       the torch module doing it (registered as one gvirtus module)
    parsing_module(cpu_fast=False)      the process's ParsingModule: local-CPU lowered, or portable
    parsing_runner(device)              the cached local / remote runner of that module
    save_parse_png / load_parse_png     palette ("P") PNGs holding label values (VITON-HD image-parse/)
    colorize(parse)                     (H, W, 3) uint8 RGB in the CIHP palette
    labels                              the CIHP label ids (labels.FACE, labels.LEFT_ARM, ...) and names
    errors: ParsingError, InvalidParsingInput, DatasetError
"""

from __future__ import annotations

from node1.parsing import labels
from node1.parsing.api import ParseResult, parse_person
from node1.parsing.errors import DatasetError, InvalidParsingInput, ParsingError
from node1.parsing.labels import LABEL_NAMES, PALETTE, colorize, load_parse_png, save_parse_png
from node1.parsing.model import ParsingModule, work_stride
from node1.parsing.runner import parsing_module, parsing_runner

__all__ = [
    "LABEL_NAMES", "PALETTE", "DatasetError", "InvalidParsingInput", "ParseResult", "ParsingError", "ParsingModule",
    "colorize", "labels", "load_parse_png", "parse_person", "parsing_module", "parsing_runner", "save_parse_png",
    "work_stride",
]
