"""Label Studio import: tasks whose ``predictions`` hold the boxes, and the labelling config they need.

The output folder holds ``tasks.json`` (import it into a project) and ``config.xml`` (the
project's labelling interface: one ``RectangleLabels`` with the classes in prompt order). Each
task's image is ``image_url`` + the file's path relative to the image folder (URL-quoted); the
default is Label Studio's local-files route, so starting it with
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<image folder>``
and adding that folder as local storage shows the images. Predictions carry each box's score and
the model's name as ``model_version``, so reviewers can sort tasks by confidence.

Coordinates are percentages of the image, as Label Studio stores them, of the COCO output's
``[x, y, w, h]`` (w = x2 - x1 + 1 with GLIP's inclusive x2): x = x / W * 100, width = w / W * 100.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from glipcli.io.coco import atomic_file, write_text_atomic
from glipcli.io.labelled import LabelledImage, rounded_xywh, score

TASKS = "tasks.json"
CONFIG = "config.xml"
LOCAL_FILES = "/data/local-files/?d="
FROM_NAME = "label"
TO_NAME = "image"


def labelstudio_config(class_names: Sequence[str]) -> str:
    """The labelling config XML: an image and one rectangle tool with every class."""
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in class_names)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </RectangleLabels>\n'
        "</View>\n"
    )


def labelstudio_task(
    image: LabelledImage, class_names: Sequence[str], model_version: str, image_url: str = LOCAL_FILES
) -> dict[str, Any]:
    """One task; ``data.file_name`` keeps the relative path for tools that map tasks back to files."""
    results = []
    scores = image.scores if image.scores is not None else [None] * len(image.boxes)
    boxes = rounded_xywh(image)
    for k, ((x, y, w, h), value, class_id) in enumerate(zip(boxes, scores, image.class_ids, strict=True)):
        result: dict[str, Any] = {
            "id": f"b{k}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "rectanglelabels",
            "original_width": image.width,
            "original_height": image.height,
            "image_rotation": 0,
            "value": {
                "x": x / image.width * 100,
                "y": y / image.height * 100,
                "width": w / image.width * 100,
                "height": h / image.height * 100,
                "rotation": 0,
                "rectanglelabels": [class_names[int(class_id)]],
            },
        }
        if value is not None:
            result["score"] = score(value)
        results.append(result)
    prediction: dict[str, Any] = {"model_version": model_version, "result": results}
    if image.scores is not None and len(image.scores):
        prediction["score"] = score(min(image.scores))  # the task is as doubtful as its least sure box
    return {
        "data": {"image": image_url + quote(image.file_name), "file_name": image.file_name},
        "predictions": [prediction],
    }


def write_labelstudio(
    out_dir: Path,
    images: Iterable[LabelledImage],
    class_names: Sequence[str],
    model_version: str,
    image_url: str = LOCAL_FILES,
) -> None:
    """``config.xml`` and ``tasks.json`` (streamed: one task at a time), each atomically."""
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / CONFIG, labelstudio_config(class_names))
    with atomic_file(out_dir / TASKS) as f:
        f.write("[")
        separator = "\n"
        for image in images:
            task = labelstudio_task(image, class_names, model_version, image_url)
            f.write(separator + json.dumps(task, ensure_ascii=False, allow_nan=False))
            separator = ",\n"
        f.write("\n]\n")
