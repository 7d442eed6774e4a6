"""data_prep: Kinetics, Something-Something V2, generic video lists and image folders -> sharded TFRecords.

Stages, one module each: annotation parsing (kinetics, ssv2, generic, images; pure
functions returning Items and Failures), decoding (decode: PyAV, rotation, resize, fps),
encoding (tfsts.data.schema), sharding and writing (sharding, writer, pipeline: Apache
Beam, deterministic and resumable), and tools (verify, inspect). See docs/data_prep.md.
"""
