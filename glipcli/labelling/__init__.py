"""``glip label``: a folder of images -> pseudo-labels that no crash can lose.

- ``folder``: :func:`label_folder`, the run (listing, ids, journal, resume, summary);
- ``records``: the journal records both engines make and the writers read;
- ``journals``: the journal and the Ray workers' shards, merged by image id;
- ``local_runner`` and ``ray_runner``: the two engines;
- ``writers``: COCO and the other formats, streamed from the records, and the errors sidecar.
"""
