"""CVAT for images 1.1: one XML file with the label list and a ``<box>`` per detection.

CVAT imports it into a task of the same images ("Upload annotations", CVAT for images 1.1);
Datumaro reads it as ``cvat``. Images are named by their path relative to the image folder, as
CVAT names the files of a task made from that folder. Box corners are CVAT's continuous
coordinates: ``xbr`` is the far edge, x + w of the COCO output's box (x2 + 1 for GLIP's
inclusive x2). The score is a number attribute of each box (declared on every label), and
``source="auto"`` marks the box as a model's, as CVAT's own auto-annotation does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from glipcli.io.coco import atomic_file
from glipcli.io.labelled import LabelledImage, px, rounded_xywh, score


def cvat_meta(class_names: Sequence[str], task_name: str, scored: bool) -> str:
    """``<version>`` and ``<meta>``: the labels, each with the score attribute when there are scores."""
    attribute = (
        "<attributes><attribute><name>score</name><mutable>False</mutable><input_type>number</input_type>"
        "<default_value>0</default_value><values>0;1;0.00001</values></attribute></attributes>"
        if scored
        else "<attributes></attributes>"
    )
    labels = "".join(f"<label><name>{escape(name)}</name>{attribute}</label>\n" for name in class_names)
    return (
        "<version>1.1</version>\n<meta>\n<task>\n"
        f"<name>{escape(task_name)}</name>\n<mode>annotation</mode>\n<labels>\n{labels}</labels>\n"
        "</task>\n</meta>\n"
    )


def cvat_image(frame: int, image: LabelledImage, class_names: Sequence[str]) -> str:
    """One ``<image>`` element with its boxes."""
    lines = [
        f"<image id={quoteattr(str(frame))} name={quoteattr(image.file_name)} "
        f'width="{image.width}" height="{image.height}">'
    ]
    scores = image.scores if image.scores is not None else [None] * len(image.boxes)
    for (x, y, w, h), value, class_id in zip(rounded_xywh(image), scores, image.class_ids, strict=True):
        attribute = "" if value is None else f'\n    <attribute name="score">{score(value)!r}</attribute>\n  '
        lines.append(
            f'  <box label={quoteattr(class_names[int(class_id)])} source="auto" occluded="0" '
            f'xtl="{x!r}" ytl="{y!r}" xbr="{px(x + w)!r}" ybr="{px(y + h)!r}" z_order="0">'
            f"{attribute}</box>"
        )
    lines.append("</image>\n")
    return "\n".join(lines)


def write_cvat(
    path: Path, images: Iterable[LabelledImage], class_names: Sequence[str], task_name: str, scored: bool = True
) -> None:
    """The whole file, streamed image by image into a temp file that replaces ``path`` when complete."""
    with atomic_file(Path(path)) as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n')
        f.write(cvat_meta(class_names, task_name, scored))
        for frame, image in enumerate(images):
            f.write(cvat_image(frame, image, class_names))
        f.write("</annotations>\n")
