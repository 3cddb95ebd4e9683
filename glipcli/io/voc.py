"""Pascal VOC detection labels: one XML per image under ``Annotations/``, mirroring the image tree.

The folder is a VOC dataset as CVAT, Datumaro and labelImg import it: ``Annotations/<path>.xml``,
``ImageSets/Main/default.txt`` (the image ids) and ``labelmap.txt`` (the classes; without it
importers assume VOC's 20 classes). Boxes are the devkit's 1-based inclusive integer pixels,
written by supervision's ``object_to_pascal_voc``; the score rides along as a Datumaro-style
``<attributes>`` entry, which VOC readers that do not know it ignore.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from xml.etree.ElementTree import Element, SubElement, indent, tostring

import numpy as np
from supervision.dataset.formats.pascal_voc import object_to_pascal_voc

from glipcli.errors import DataError
from glipcli.io.coco import write_text_atomic
from glipcli.io.labelled import LabelledImage, rounded_xywh, score

ANNOTATIONS = "Annotations"


def voc_path(out_dir: Path, image_path: str) -> Path:
    """``out_dir/Annotations/<image path>.xml``; refuses paths that would leave ``out_dir``."""
    rel = PurePosixPath(image_path)
    if rel.is_absolute() or ".." in rel.parts or not rel.name:
        raise DataError(f"{image_path}: image path must be relative to the image folder, without '..'")
    return Path(out_dir, ANNOTATIONS, *rel.with_suffix(".xml").parts)


def voc_xml(image: LabelledImage, class_names: Sequence[str]) -> str:
    """One ``<annotation>``, from the COCO output's ``[x, y, w, h]``: the far edge x + w is x2 + 1 for GLIP's
    inclusive x2, and supervision writes it as the devkit's last pixel, 1-based."""
    rel = PurePosixPath(image.file_name)
    root = Element("annotation")
    SubElement(root, "folder").text = str(rel.parent) if str(rel.parent) != "." else ""
    SubElement(root, "filename").text = rel.name
    SubElement(root, "path").text = image.file_name
    SubElement(SubElement(root, "source"), "database").text = "glipcli"
    size = SubElement(root, "size")
    for tag, value in (("width", image.width), ("height", image.height), ("depth", 3)):
        SubElement(size, tag).text = str(value)
    SubElement(root, "segmented").text = "0"
    scores = image.scores if image.scores is not None else [None] * len(image.boxes)
    for (x, y, w, h), value, class_id in zip(rounded_xywh(image), scores, image.class_ids, strict=True):
        obj = object_to_pascal_voc(np.asarray([x, y, x + w, y + h]), class_names[int(class_id)])
        for tag in ("pose", "truncated", "difficult", "occluded"):
            SubElement(obj, tag).text = "Unspecified" if tag == "pose" else "0"
        if value is not None:
            attribute = SubElement(SubElement(obj, "attributes"), "attribute")
            SubElement(attribute, "name").text = "score"
            SubElement(attribute, "value").text = repr(score(value))
        root.append(obj)
    indent(root)
    return tostring(root, encoding="unicode") + "\n"


def write_voc(out_dir: Path, images: Iterable[LabelledImage], class_names: Sequence[str]) -> None:
    """Write the dataset, each file atomically, consuming ``images`` as they come."""
    out_dir = Path(out_dir)
    write_text_atomic(
        out_dir / "labelmap.txt", "# label:color_rgb:parts:actions\n" + "".join(f"{name}:::\n" for name in class_names)
    )
    ids: list[str] = []
    written: dict[Path, str] = {}
    for image in images:
        target = voc_path(out_dir, image.file_name)
        if target in written:
            raise DataError(f"{image.file_name} and {written[target]} would share the VOC file {target}")
        written[target] = image.file_name
        write_text_atomic(target, voc_xml(image, class_names))
        ids.append(PurePosixPath(image.file_name).with_suffix("").as_posix())
    write_text_atomic(out_dir / "ImageSets" / "Main" / "default.txt", "".join(f"{i}\n" for i in ids))
